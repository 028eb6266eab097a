"""The zeroshot stage end to end through the CLI, on the tiny cache with tiny local CLIPs and real MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from medvit.cli import main
from medvit.config import load_params
from medvit.data.manifest import read_manifest
from medvit.data.scores import read_scores
from medvit.lineage import pipeline_id
from medvit.tracking.runs import git_commit

REPO = Path(__file__).resolve().parents[2]


def _params(tmp_path: Path, zeroshot: dict[str, Any], name: str = "params.yaml") -> Path:
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    data["zeroshot"].update(zeroshot)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real SQLite store for the module (creating its schema takes seconds)."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture
def env(tmp_path: Path, mlflow_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_db}")
    monkeypatch.setenv("MEDVIT_CACHE_DIR", str(tmp_path / "medvit-cache"))
    return tmp_path


def _runs(domain: str) -> list[Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name(f"medvit-{domain}")
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _count_calls(monkeypatch: pytest.MonkeyPatch, cls: type, name: str) -> list[int]:
    """Spy: count calls of ``cls.name`` while still running the real method."""
    calls = [0]
    real = getattr(cls, name)

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, spy)
    return calls


def test_medical_transformers_end_to_end_and_prompt_rerun(env: Path, tiny_cache, tiny_clip_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import CLIPModel

    cache = tiny_cache()
    out = env / "baselines"
    medical = {"backend": "transformers", "model": str(tiny_clip_dir), "rgb": "replicate"}
    params = _params(env, {"medical": medical, "allow_random_init": False})
    calls = _count_calls(monkeypatch, CLIPModel, "get_image_features")
    argv = ["zeroshot", "--domain", "medical", "--params", str(params), "--cache", str(cache), "--out", str(out)]
    assert main(argv) == 0
    assert calls[0] > 0

    # the shared prediction format: ids = the manifest's split ids, columns = label_names, scores in [0, 1]
    manifest = read_manifest(cache)
    for baseline in ("clip_zeroshot", "linear_probe"):
        for split in ("val", "test"):
            path = out / "scores" / baseline / f"{split}.csv"
            assert path.read_text().splitlines()[0] == "id,a,b,c"
            table = read_scores(path)
            assert list(table.ids) == manifest.split(split)["id"].tolist()
            assert table.label_names == manifest.label_names
            assert ((table.scores >= 0) & (table.scores <= 1)).all()

    meta = json.loads((out / "meta.json").read_text())
    p = load_params(params)
    want_pid = pipeline_id(p, "zeroshot", "medical", manifest.digest())
    assert meta["pipeline_id"] == want_pid
    assert meta["baselines"]["clip_zeroshot"]["weights"] == f"local:{tiny_clip_dir.resolve()}"
    assert meta["baselines"]["linear_probe"]["n_train_per_label"] == {"a": 28, "b": 28, "c": 28}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights"] == f"local:{tiny_clip_dir.resolve()}"
    for baseline in ("clip_zeroshot", "linear_probe"):
        assert {"val/auroc_macro", "test/auroc_macro", "test/ap_micro"} <= set(metrics[baseline])
    # the probe learns the quadrant signal from frozen (random tiny) embeddings better than chance
    assert metrics["linear_probe"]["test/auroc_macro"] > 0.6

    run = _runs("medical")[-1]
    assert run.info.run_id == meta["run_id"] and run.info.status == "FINISHED"
    assert run.info.run_name == f"zeroshot-medical-{git_commit()[:7]}"
    tags = run.data.tags
    assert tags["pipeline_id"] == want_pid and tags["stage"] == "zeroshot" and tags["domain"] == "medical"
    assert tags["weights"] == meta["baselines"]["clip_zeroshot"]["weights"]
    assert tags["prompt_hash"] == meta["prompt_hash"] and tags["embeddings_reused"] == "False"
    logged_auroc = run.data.metrics["clip_zeroshot/test/auroc_macro"]
    assert logged_auroc == pytest.approx(metrics["clip_zeroshot"]["test/auroc_macro"])
    assert "linear_probe/val/auroc_macro" in run.data.metrics
    from mlflow.tracking import MlflowClient

    logged = {f.path for f in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"meta.json", "metrics.json", "prompts.json"} <= logged

    # re-run with different prompts: the image encoder is not called again, the text is re-encoded
    prompts = env / "prompts.yaml"
    prompts.write_text("medical:\n  templates: {positive: ['an x-ray with {label}'], negative: ['a normal x-ray']}\n")
    first = read_scores(out / "scores" / "clip_zeroshot" / "test.csv").scores
    probe_first = read_scores(out / "scores" / "linear_probe" / "test.csv").scores
    calls[0] = 0
    params2 = _params(env, {"medical": medical, "allow_random_init": False, "prompts": str(prompts)}, "p2.yaml")
    assert main(["zeroshot", "--domain", "medical", "--params", str(params2), "--cache", str(cache),
                 "--out", str(out)]) == 0
    assert calls[0] == 0
    meta2 = json.loads((out / "meta.json").read_text())
    assert meta2["prompt_hash"] != meta["prompt_hash"]
    assert not np.allclose(read_scores(out / "scores" / "clip_zeroshot" / "test.csv").scores, first)
    np.testing.assert_allclose(read_scores(out / "scores" / "linear_probe" / "test.csv").scores, probe_first,
                               atol=1e-6)  # same cached embeddings -> same probe
    assert _runs("medical")[-1].data.tags["embeddings_reused"] == "True"


def test_satellite_open_clip_bands_and_kshot(env: Path, tiny_cache, tiny_open_clip_dir: Path) -> None:
    cache = tiny_cache(channels=4)
    out = env / "baselines"
    sat = {"backend": "open_clip", "model": f"local-dir:{tiny_open_clip_dir}", "rgb": "bands",
           "rgb_bands": ["ch2", "ch1", "ch0"]}
    params = _params(env, {"satellite": sat, "scoring": "cosine", "linear_probe": {"k_shot": 3}})
    assert main(["zeroshot", "--domain", "satellite", "--params", str(params), "--cache", str(cache),
                 "--out", str(out)]) == 0
    meta = json.loads((out / "meta.json").read_text())
    zs = meta["baselines"]["clip_zeroshot"]
    assert zs["backend"] == "open_clip" and zs["scoring"] == "cosine" and zs["rgb"]["channels"] == [2, 1, 0]
    assert set(meta["baselines"]["linear_probe"]["n_train_per_label"].values()) == {6}
    assert read_scores(out / "scores" / "linear_probe" / "val.csv").label_names == ("a", "b", "c")
    assert _runs("satellite")[-1].data.tags["weights"] == f"local:{tiny_open_clip_dir.resolve()}"


def test_random_init_is_recorded_everywhere(env: Path, tiny_cache, empty_hub: Path) -> None:
    cache = tiny_cache(n_groups=10, per_group=1)  # the ViT-B/32 fallback at 224 px: keep it to a few images
    out = env / "baselines"
    # (the transformers fallback is covered in test_backends; open_clip builds its ViT-B/32 faster)
    medical = {"backend": "open_clip", "model": "hf-hub:acme/clip-not-downloaded", "rgb": "replicate"}
    params = _params(env, {"medical": medical, "allow_random_init": True, "linear_probe": {"enabled": False}})
    argv = ["zeroshot", "--domain", "medical", "--params", str(params), "--cache", str(cache), "--out", str(out)]
    assert main(argv) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["weights"] == meta["baselines"]["clip_zeroshot"]["weights"] == "random-init"
    assert json.loads((out / "metrics.json").read_text())["weights"] == "random-init"
    run = _runs("medical")[-1]
    assert run.info.run_id == meta["run_id"] and run.data.tags["weights"] == "random-init"
    assert not (out / "scores" / "linear_probe").exists()

    # without allow_random_init the same config is a clear error (exit 2), not a silent random model
    strict = _params(env, {"medical": medical, "allow_random_init": False}, "strict.yaml")
    assert main(["zeroshot", "--domain", "medical", "--params", str(strict), "--cache", str(cache),
                 "--out", str(env / "b2")]) == 2
    assert not (env / "b2").exists()
