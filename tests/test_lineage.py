"""Lineage ids: exactly the params a stage declares in dvc.yaml plus the dvc.lock hashes of its upstream outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from medvit.config import ConfigError, load_params, parse_params
from medvit.lineage import declared_params, params_hash, pipeline_id, read_stages, upstream_data

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with the repo's dvc.yaml and params.yaml (stages resolve dvc.yaml from the cwd)."""
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _lock(root: Path, hashes: dict[str, str]) -> None:
    outs = [{"path": p, "md5": h} for p, h in hashes.items()]
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"ingest@medical": {"outs": outs}}}))


def _params(root: Path, key: str | None = None, value: object = None) -> object:
    data = yaml.safe_load((root / "params.yaml").read_text())
    if key is not None:
        *parents, leaf = key.split(".")
        node = data
        for k in parents:
            node = node[k]
        node[leaf] = value
    return parse_params(data)


def test_matrix_params_resolve_as_dvc_resolves_them(project: Path) -> None:
    from dvc.repo import Repo

    Repo.init(str(project), no_scm=True).close()
    with Repo(str(project)) as repo:
        dvc = {s.addressing: tuple(p for d in s.deps if hasattr(d, "params") for p in d.params)
               for s in repo.index.stages}
    ours = {name: decl.params for name, decl in read_stages().items()}
    assert {k: sorted(v) for k, v in ours.items()} == {k: sorted(v) for k, v in dvc.items()}


def test_each_finetune_stage_declares_only_its_own_domain() -> None:
    med = declared_params("finetune", "medical", REPO / "dvc.yaml")
    assert {"finetune.augment.medical", "finetune.domains.medical", "finetune.lr"} <= set(med)
    assert not [k for k in med if "satellite" in k] and "finetune" not in med and "finetune.augment" not in med


def test_pipeline_id_changes_only_with_the_stage_s_declared_inputs(project: Path) -> None:
    _lock(project, {"data/cache/medical/shards": "aaa.dir", "data/cache/medical/manifest.csv": "bbb"})
    base = _params(project)

    def ids(p: object) -> dict[str, str]:
        return {f"{s}@{d}": pipeline_id(p, s, d, "data1") for s in ("finetune", "zeroshot") for d in ("medical", "satellite")}  # type: ignore[arg-type]

    before = ids(base)
    assert len(set(before.values())) == 4
    changed = {
        "zeroshot.batch_size": {"zeroshot@medical", "zeroshot@satellite"},
        "finetune.augment.satellite.noise_std": {"finetune@satellite"},
        "finetune.lr": {"finetune@medical", "finetune@satellite"},
        # upstream params reach downstream ids only through the upstream outputs' hashes (as in DVC)
        "ingest.workers": set(),
        "ingest.medical.image_size": set(),
    }
    for key, expect in changed.items():
        after = ids(_params(project, key, 33))
        assert {s for s in before if after[s] != before[s]} == expect, key
    _lock(project, {"data/cache/medical/shards": "ccc.dir", "data/cache/medical/manifest.csv": "bbb"})
    after = ids(base)
    assert {s for s in before if after[s] != before[s]} == {"finetune@medical", "zeroshot@medical"}
    assert pipeline_id(base, "finetune", "medical", "data2") != after["finetune@medical"]


def test_upstream_data_maps_each_dependency_to_its_lock_hash(project: Path) -> None:
    _lock(project, {"data/cache/medical/shards": "aaa.dir"})
    up = upstream_data("finetune", "medical")
    assert up["data/cache/medical/shards"] == "aaa.dir" and up["data/cache/medical/manifest.csv"] == ""
    assert not [d for d in up if d.startswith(("medvit", "pipelines"))]  # code is not upstream data
    assert "models/medical/meta.json" in upstream_data("evaluate", "medical")


def test_params_hash_is_the_stage_s_own_params(project: Path) -> None:
    base = _params(project)
    assert params_hash(_params(project, "ingest.workers", 3), "finetune", "medical") == \
        params_hash(base, "finetune", "medical")
    assert params_hash(_params(project, "finetune.seed", 3), "finetune", "medical") != \
        params_hash(base, "finetune", "medical")


def test_a_declared_key_missing_from_params_is_named(project: Path) -> None:
    p = parse_params({"finetune": {"domains": {"satellite": {"epochs": 2}}}})
    with pytest.raises(ConfigError, match=r"finetune\.domains\.medical.*add it"):
        params_hash(p, "finetune", "medical")


def test_repo_params_give_every_declared_key() -> None:
    p = load_params(REPO / "params.yaml")
    for name in read_stages(REPO / "dvc.yaml"):
        stage, domain = name.split("@")
        for key in declared_params(stage, domain, REPO / "dvc.yaml"):
            p.value(key)
