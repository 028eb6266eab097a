"""End to end: real `dvc repro` of the whole pipeline in a temporary git repo on a tiny config.

One module-scoped run (sample -> ingest -> finetune -> zeroshot -> evaluate -> register, both
domains, a tiny DeiT3 and tiny local CLIPs through the real loaders, the embedded SQLite MLflow
store), then checks of what a user sees: outputs, a no-op second repro, targeted re-runs without false
"stale model" warnings, params declared exactly as the stages read them, a real `mlflow server` over
the store, `dvc exp run -S`, a local DVC remote, and the notebooks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import yaml

from medvit.hashing import sha256_file
from servers import start_mlflow_auth_server, start_mlflow_server, start_postgres, stop_postgres, stop_server

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("medical", "satellite")

pytestmark = pytest.mark.slow


def _tiny_clip_transformers(out: Path) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from medvit.zeroshot.backends import bundled_clip_tokenizer

    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=2),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(out)
    ip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=ip, tokenizer=bundled_clip_tokenizer()).save_pretrained(out)
    return out


def _tiny_clip_open_clip(out: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    model_cfg = {"embed_dim": 16,
                 "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]}}))
    torch.manual_seed(1)
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    return out


def tiny_params(clip_hf: Path, clip_oc: Path) -> dict[str, Any]:
    """The repo's params.yaml shrunk to seconds per stage."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["sample"]["medical"].update(n_patients=12, images_per_patient=2, image_size=64, burned_in=1)
    p["sample"]["satellite"].update(n_scenes=3, scene_size=128, tile_size=32, stride=32)
    p["ingest"]["medical"]["image_size"] = 32
    p["ingest"]["satellite"].update(tile_size=32, stride=32, group_block=64)  # 3 scenes: split by spatial block
    p["finetune"].update(model="deit3_small_patch16_384", model_kwargs={"depth": 2, "embed_dim": 64, "num_heads": 2},
                         img_size=32, freeze_blocks=1, epochs=2, batch_size=8, early_stopping_patience=2,
                         domains={"medical": {}, "satellite": {}})
    p["zeroshot"]["allow_random_init"] = False  # the tiny CLIPs load through the real local loaders
    p["zeroshot"]["medical"] = {"backend": "transformers", "model": str(clip_hf), "rgb": "replicate"}
    p["zeroshot"]["satellite"] = {"backend": "open_clip", "model": f"local-dir:{clip_oc}", "rgb": "bands",
                                  "rgb_bands": ["B4", "B3", "B2"]}
    # a handful of test groups: below the default min_groups the gate refuses (unreliable intervals)
    p["evaluate"].update(n_bootstrap=50, n_attention_maps=1, min_groups=2)
    p["register"].update(min_auroc=0.0, min_margin=-1.0)  # the tiny model must pass the gate to be registered
    return p


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh git+DVC copy of this repo with the tiny params, after one full `dvc repro`."""
    root = tmp_path_factory.mktemp("e2e")
    repo = root / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/raw", "data/cache", "models/", "baselines/", "reports/")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    params = tiny_params(_tiny_clip_transformers(root / "clip-hf"), _tiny_clip_open_clip(root / "clip-oc"))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MEDVIT_"))}
    # MEDVIT_RECORD_PARAMS: every stage appends the params keys its code reads (test_declared_params_...)
    env.update(HF_HUB_OFFLINE="1", MEDVIT_CACHE_DIR=str(root / "emb-cache"), GIT_AUTHOR_NAME="t",
               MEDVIT_RECORD_PARAMS=str(root / "params-read.tsv"),
               GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny pipeline"], repo, env)
    run(["dvc", "repro"], repo, env, timeout=1200)
    run(["git", "add", "dvc.lock"], repo, env)
    run(["git", "commit", "-qm", "repro"], repo, env)
    yield repo, env


def test_every_stage_wrote_its_outputs(pipeline: tuple[Path, dict[str, str]]) -> None:
    repo, _ = pipeline
    for d in DOMAINS:
        report = json.loads((repo / "data" / "cache" / d / "report.json").read_text())
        assert report["n_input"] == report["n_ingested"] + report["n_rejected"] + report["n_filtered"]
        assert report["n_samples"] > 0
        ft = json.loads((repo / "models" / d / "metrics.json").read_text())
        assert "test/auroc_macro" in json.dumps(ft)
        assert (repo / "models" / d / "model.safetensors").stat().st_size > 0
        for b in ("clip_zeroshot", "linear_probe"):
            assert (repo / "baselines" / d / "scores" / b / "test.csv").is_file()
        metrics = json.loads((repo / "reports" / d / "metrics.json").read_text())
        assert 0.0 <= metrics["test/auroc_macro"] <= 1.0 and "test/auroc_macro_ci_low" in metrics
        record = json.loads((repo / "reports" / d / "registry" / "registration.json").read_text())
        assert record["version"] is not None
        # the review report of the version (issue #14): the logged copy's digest is the one recorded
        logged = repo / "reports" / d / "registry" / "review_report.html"
        assert sha256_file(logged) == record["review_report_sha256"]
        assert "Subgroups" in logged.read_text() and (repo / "reports" / d / "review" / "review_report.html").is_file()


def test_predict_stage_scored_the_samples_raw_files(pipeline: tuple[Path, dict[str, str]]) -> None:
    """The predict example: every raw image (medical) or chip (satellite) has a row, scores or its reason."""
    import pandas as pd

    repo, _ = pipeline
    thresholds = {d: json.loads((repo / "reports" / d / "thresholds.json").read_text()) for d in DOMAINS}
    for d in DOMAINS:
        table = pd.read_parquet(repo / "reports" / d / "predict" / "predictions.parquet")
        names = thresholds[d]["label_names"]
        scored = table[table["error"].fillna("") == ""]
        assert len(scored) and scored[[f"score:{n}" for n in names]].notna().all().all()
        for n in names:  # labels are the scores thresholded at evaluate's val-chosen operating points
            assert (scored[f"label:{n}"] == (scored[f"score:{n}"] >= thresholds[d]["thresholds"][n])).all()
    medical = pd.read_parquet(repo / "reports" / "medical" / "predict" / "predictions.parquet")
    assert medical["source"].nunique() == len(list((repo / "data" / "raw" / "medical" / "images").iterdir()))
    assert medical["error"].fillna("").str.contains("burned-in").sum() >= 1  # the sample's burned-in image
    maps = list((repo / "reports" / "satellite" / "predict" / "maps").rglob("*.tif"))
    assert len(maps) == len(list((repo / "data" / "raw" / "satellite" / "scenes").glob("*.tif")))


def test_second_repro_is_a_no_op(pipeline: tuple[Path, dict[str, str]]) -> None:
    repo, env = pipeline
    out = run(["dvc", "repro"], repo, env).stdout
    assert "Running stage" not in out, out


def test_evaluate_param_change_reruns_only_evaluate_and_register(pipeline: tuple[Path, dict[str, str]]) -> None:
    repo, env = pipeline
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["n_bootstrap"] = 40
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        out = run(["dvc", "repro"], repo, env).stdout
        ran = set(re.findall(r"Running stage '(\w+)@", out))
        assert ran == {"evaluate", "register"}, out
    finally:
        run(["git", "checkout", "params.yaml", "dvc.lock"], repo, env)
        run(["dvc", "checkout", "-q"], repo, env)


def _set(repo: Path, key: str, value: Any) -> None:
    """Set dotted ``key`` in the repo's params.yaml."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    *parents, leaf = key.split(".")
    node = params
    for k in parents:
        node = node[k]
    node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _restore(repo: Path, env: dict[str, str]) -> None:
    run(["git", "checkout", "params.yaml", "dvc.lock"], repo, env)
    run(["dvc", "checkout", "-q"], repo, env)


def _stale(repo: Path, d: str) -> list[str]:
    return [ln for ln in (repo / "reports" / d / "comparison.md").read_text().splitlines() if "WARNING" in ln]


def test_zeroshot_only_param_reruns_zeroshot_without_stale_warning(pipeline: tuple[Path, dict[str, str]]) -> None:
    repo, env = pipeline
    _set(repo, "zeroshot.batch_size", 7)
    try:
        out = run(["dvc", "repro"], repo, env).stdout
        # register re-runs only if evaluate's outputs changed (batch size leaves the scores as they were)
        assert {"zeroshot", "evaluate"} <= set(re.findall(r"Running stage '(\w+)@", out)) <= \
            {"zeroshot", "evaluate", "register"}, out
        for d in DOMAINS:
            assert _stale(repo, d) == []
        assert "Running stage" not in run(["dvc", "repro"], repo, env).stdout
    finally:
        _restore(repo, env)


def test_finetune_param_warns_until_finetune_reruns(pipeline: tuple[Path, dict[str, str]]) -> None:
    repo, env = pipeline
    _set(repo, "finetune.augment.medical.brightness", 0.2)
    try:
        # evaluate alone, forced (its own inputs did not change): the model it reads is now stale
        run(["dvc", "repro", "--single-item", "--force", "evaluate@medical"], repo, env)
        assert any("may be stale" in w and "models/meta.json" in w for w in _stale(repo, "medical"))
        out = run(["dvc", "repro"], repo, env).stdout  # one domain's key re-runs only that domain's stages
        ran = set(re.findall(r"Running stage '(\w+@\w+)'", out))
        # register is left out: its registry folder is not DVC-cached, so an earlier test's restore can leave it
        # differing from dvc.lock, and DVC re-runs it for that
        assert {s for s in ran if not s.startswith("register@")} == {"finetune@medical", "evaluate@medical",
                                                                      "predict@medical"}, out
        assert _stale(repo, "medical") == []
    finally:
        _restore(repo, env)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        return {k: v for key, sub in node.items() for k, v in _leaves(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def _covers(parent: str, key: str) -> bool:
    return key == parent or key.startswith(parent + ".")


# DVC cannot declare a param for one matrix item only: evaluate@satellite declares the medical key too.
# (stage, key) pairs a stage declares without reading them in the demo: DVC cannot declare a key for one
# matrix item, or for one labels format (ingest.medical.metadata is read by the mimic format only,
# ingest.satellite.vector_class_field by label_source: vector only, use_official_split and nomenclature
# by the BigEarthNet / EuroSAT formats only).
OVER_DECLARED = {("evaluate@satellite", "ingest.medical.allow_burned_in"),
                 ("ingest@medical", "ingest.medical.metadata"),
                 ("ingest@satellite", "ingest.satellite.vector_class_field"),
                 ("ingest@satellite", "ingest.satellite.use_official_split"),
                 ("ingest@satellite", "ingest.satellite.nomenclature")}


def test_declared_params_are_exactly_the_keys_each_stage_reads(pipeline: tuple[Path, dict[str, str]],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """For every leaf key of params.yaml, `dvc status` after changing it lists exactly the stages that read it."""
    from dvc.repo import Repo

    repo, env = pipeline
    monkeypatch.chdir(repo)  # DVC names stages relative to the working directory
    reads: dict[str, set[str]] = {}
    for line in (repo.parent / "params-read.tsv").read_text().splitlines():
        stage, domain, key = line.split("\t")
        reads.setdefault(f"{stage}@{domain}", set()).add(key)
    assert {s.split("@")[0] for s in reads} == {"sample", "ingest", "finetune", "zeroshot", "evaluate", "register"}
    original = (repo / "params.yaml").read_text()
    leaves = _leaves(yaml.safe_load(original))
    dvc = Repo(str(repo))

    def listed() -> set[str]:  # stages whose declared params changed (uncached outputs may differ too)
        return {s for s, changes in dvc.status().items() if "params.yaml" in json.dumps(changes)}

    mismatches = []
    try:
        assert listed() == set()
        for key in leaves:
            _set(repo, key, "__changed__")
            stages = listed()
            readers = {s for s, keys in reads.items()
                       if any(_covers(r, key) or _covers(key, r) for r in keys)}
            if stages != readers and stages - readers != {s for s, k in OVER_DECLARED if k == key}:
                mismatches.append(f"{key}: dvc status lists {sorted(stages)}, read by {sorted(readers)}")
            (repo / "params.yaml").write_text(original)
    finally:
        (repo / "params.yaml").write_text(original)
        dvc.close()
    # A read of a key params.yaml leaves out (its default) must still fall under a declared param.
    declared = {s.addressing: set(d.params) for s in Repo(str(repo)).index.stages for d in s.deps
                if hasattr(d, "params")}
    for stage, keys in reads.items():
        for r in keys:
            if not any(_covers(p, r) for p in declared[stage]) and not any(_covers(r, k) for k in leaves):
                mismatches.append(f"{stage} reads {r}, which dvc.yaml does not declare")
    assert not mismatches, "\n".join(mismatches)


def test_mlflow_server_shows_linked_runs_figures_and_registry(pipeline: tuple[Path, dict[str, str]],
                                                              tmp_path: Path) -> None:
    repo, _ = pipeline
    uri, proc = start_mlflow_server(repo / ".mlflow" / "mlflow.db", repo / ".mlflow" / "artifacts", tmp_path / "ui.log")

    def api(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        req = urllib.request.Request(f"{uri}/api/2.0/mlflow/{path}", method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    try:
        exps = {e["name"]: e["experiment_id"] for e in api("experiments/search", {"max_results": 100})["experiments"]}
        assert {"medvit-medical", "medvit-satellite"} <= set(exps)
        for d in DOMAINS:
            runs = api("runs/search", {"experiment_ids": [exps[f"medvit-{d}"]], "max_results": 100})["runs"]
            by_stage: dict[str, dict[str, Any]] = {}
            for r in runs:
                tags = {t["key"]: t["value"] for t in r["data"].get("tags", [])}
                by_stage.setdefault(tags["stage"], {**r, "tags": tags})
            assert {"finetune", "zeroshot", "evaluate", "register"} <= set(by_stage)
            ev_tags = by_stage["evaluate"]["tags"]
            by_id = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
            for s in ("finetune", "zeroshot"):  # evaluate links the runs it compared, by run and pipeline id
                linked = by_id[ev_tags[f"{s}_run_id"]]
                assert linked["stage"] == s and linked["pipeline_id"] == ev_tags[f"{s}_pipeline_id"]
            assert ev_tags["lineage_warnings"] == "0"
            for s in ("finetune", "zeroshot", "evaluate"):
                assert by_stage[s]["data"].get("metrics"), f"{s} run has no metrics"
                assert by_stage[s]["tags"]["mlflow.runName"].startswith(f"{s}-{d}-")
            ev = by_stage["evaluate"]["info"]["run_id"]
            arts = api(f"artifacts/list?run_id={ev}&path=figures").get("files", [])
            assert any(a["path"].endswith(".png") for a in arts), arts
            model = api(f"registered-models/get?name=medvit-{d}")["registered_model"]
            assert any(a["alias"] == "candidate" for a in model.get("aliases", []))
            version = model["aliases"][0]["version"]
            mv = api(f"model-versions/get?name=medvit-{d}&version={version}")["model_version"]
            tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
            assert tags["review_status"] == "pending" and tags["weights"] == "random-init"
            assert "NOT FOR CLINICAL USE" in mv["description"].upper()
    finally:
        stop_server(proc)


def test_two_dvc_repro_at_once_against_the_team_server(pipeline: tuple[Path, dict[str, str]],
                                                        tmp_path: Path) -> None:
    """Both domains' stages run at the same time, as two `dvc repro` processes on different targets, against
    the team server (PostgreSQL + MLflow basic-auth) as an engineer; no run, metric or version is lost.

    DVC locks a workspace while it reproduces, so the two processes work in two copies of the repo (as two
    engineers' checkouts would), each on its own domain's stages.
    """
    from mlflow import MlflowClient
    from mlflow.server import get_app_client

    repo, env = pipeline
    admin_pw, engineer_pw = "admin-pw-for-e2e", "engineer-pw-e2e"
    pg_uri, pg, pg_data = start_postgres("pg-pw-for-e2e", ("mlflow",))
    server = None
    try:
        uri, server = start_mlflow_auth_server(f"{pg_uri}/mlflow", tmp_path, admin_pw)
        admin_env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": admin_pw}
        os.environ.update(admin_env)  # the auth client reads the credentials from the environment
        try:
            get_app_client("basic-auth", tracking_uri=uri).create_user("engineer", engineer_pw)
        finally:
            for key in admin_env:
                os.environ.pop(key)
        engineer = {**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": "engineer",
                    "MLFLOW_TRACKING_PASSWORD": engineer_pw}
        procs = {}
        for d in DOMAINS:
            clone = tmp_path / f"checkout-{d}"
            shutil.copytree(repo, clone, symlinks=True)
            targets = [f"{s}@{d}" for s in ("finetune", "zeroshot", "evaluate", "register")]
            procs[d] = subprocess.Popen(["dvc", "repro", "-f", "-s", *targets], cwd=clone, env=engineer,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        outputs = {d: p.communicate(timeout=1200)[0] for d, p in procs.items()}
        assert {d: p.returncode for d, p in procs.items()} == {d: 0 for d in DOMAINS}, outputs
        os.environ.update(admin_env)
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            for d in DOMAINS:
                clone = tmp_path / f"checkout-{d}"
                exp = client.get_experiment_by_name(f"medvit-{d}")
                runs = client.search_runs([exp.experiment_id], max_results=100)
                by_stage = {r.data.tags["stage"]: r for r in runs}
                assert sorted(r.data.tags["stage"] for r in runs) == ["evaluate", "finetune", "register", "zeroshot"]
                assert all(r.info.status == "FINISHED" for r in runs)
                local = json.loads((clone / "reports" / d / "metrics.json").read_text())
                logged = by_stage["evaluate"].data.metrics
                assert logged["test/auroc_macro"] == pytest.approx(local["test/auroc_macro"])
                assert logged["clip_zeroshot/test/auroc_macro"] == pytest.approx(
                    local["clip_zeroshot"]["test/auroc_macro"])
                assert by_stage["finetune"].data.metrics and by_stage["zeroshot"].data.metrics
                versions = client.search_model_versions(f"name = 'medvit-{d}'")
                assert len(versions) == 1 and versions[0].tags["registered_by"] == "engineer"
                assert versions[0].run_id == by_stage["register"].info.run_id
                assert client.get_model_version_by_alias(f"medvit-{d}", "candidate").version == versions[0].version
        finally:
            for key in admin_env:
                os.environ.pop(key)
    finally:
        if server is not None:
            stop_server(server)
        stop_postgres(pg, pg_data)


def test_exp_run_with_set_param_lists_metrics(pipeline: tuple[Path, dict[str, str]]) -> None:
    repo, env = pipeline
    try:
        run(["dvc", "exp", "run", "-S", "evaluate.ece_bins=5"], repo, env)
        shown = json.loads(run(["dvc", "exp", "show", "--json"], repo, env).stdout)
    finally:  # a workspace experiment leaves its params and outputs applied: go back to HEAD
        run(["git", "checkout", "params.yaml", "dvc.lock"], repo, env)
        run(["dvc", "checkout", "-q"], repo, env)
    text = json.dumps(shown)
    assert "evaluate.ece_bins" in text or "ece_bins" in text
    assert "test/auroc_macro" in text


def test_local_dvc_remote_push_and_pull(pipeline: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    repo, env = pipeline
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-f", "--local", "e2e", str(remote)], repo, env)
    run(["dvc", "push", "-r", "e2e"], repo, env)
    assert any(remote.rglob("*")), "push wrote nothing to the remote"
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path, env)
    run(["dvc", "remote", "add", "-f", "--local", "e2e", str(remote)], clone, env)
    run(["dvc", "pull", "-r", "e2e"], clone, env)
    for d in DOMAINS:
        assert (clone / "models" / d / "model.safetensors").read_bytes() == \
            (repo / "models" / d / "model.safetensors").read_bytes()
        assert (clone / "data" / "cache" / d / "manifest.csv").is_file()


@pytest.mark.parametrize("notebook", ["01_data_exploration.ipynb", "02_run_comparison.ipynb"])
def test_notebooks_execute_against_the_pipeline(pipeline: tuple[Path, dict[str, str]], notebook: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    repo, env = pipeline
    nb = nbformat.read(repo / "notebooks" / notebook, as_version=4)
    old = dict(os.environ)
    os.environ["MEDVIT_ROOT"] = str(repo)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(repo)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
    assert not any(o.get("output_type") == "error" for o in outputs)

