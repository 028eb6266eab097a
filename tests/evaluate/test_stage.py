"""The evaluate stage end to end through the CLI: real cache, score tables, classifier and SQLite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from medvit.cli import main
from medvit.data.manifest import label_column, read_manifest
from medvit.data.scores import write_scores
from medvit.models.classifier import build_classifier, save_classifier
from medvit.tracking.runs import git_commit

BASELINES = ("clip_zeroshot", "linear_probe")


def _strict_json(path: Path) -> dict:
    def refuse(c: str) -> None:
        raise AssertionError(f"{path} contains {c}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(params=["medical"])
def workspace(
    request: pytest.FixtureRequest, tiny_cache: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    """Cache (label c has no positive in test; only 2 test images free of burned-in text),
    fine-tuned model + scores, two baselines, params and an empty SQLite tracking store."""
    domain = request.param
    channels = 1 if domain == "medical" else 4
    cache = tiny_cache(n_groups=40, per_group=2, seed=3, channels=channels)
    frame = pd.read_csv(cache / "manifest.csv")
    test = frame["split"] == "test"
    frame.loc[test, label_column("c")] = 0
    frame["burned_in"] = test & (frame.groupby("split").cumcount() >= 2)
    frame.to_csv(cache / "manifest.csv", index=False)
    m = read_manifest(cache)
    rng = np.random.default_rng(0)
    models, baselines = tmp_path / "models", tmp_path / "baselines"
    meta = {"model": "deit3_small_patch16_384", "img_size": 64, "in_chans": channels,
            "label_names": list(m.label_names), "head": {"hidden_dim": 16, "dropout": 0.0},
            "mean": [0.45] * channels, "std": [0.25] * channels, "weights": "random-init",
            "pipeline_id": "pid123", "run_id": "ft-run", "data_hash": m.digest(), "params_hash": "x",
            "freeze_blocks": 1, "model_kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2}}
    save_classifier(build_classifier(meta), meta, models)
    for split in ("val", "test"):
        ids, y = m.split(split)["id"].tolist(), m.labels(split)
        write_scores(models / "scores" / f"{split}.csv", ids, np.clip(0.6 * y + 0.5 * rng.random(y.shape), 0, 1),
                     m.label_names)
        for b in BASELINES:
            write_scores(baselines / "scores" / b / f"{split}.csv", ids, rng.random(y.shape), m.label_names)
    (baselines / "meta.json").write_text(json.dumps({
        "baselines": {b: {"weights": "random-init"} for b in BASELINES}, "pipeline_id": "pid123", "run_id": "zs-run"}))
    # The project's params with evaluate overrides: the stage hashes every param dvc.yaml declares upstream.
    doc = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text())
    doc["evaluate"].update({"n_bootstrap": 200, "n_attention_maps": 4, "threshold_method": "f1"})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(doc))
    # a store that does not exist yet: a run that reached it would create it
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return {"cache": cache, "models": models, "baselines": baselines, "out": tmp_path / "reports", "params": params,
            "domain": domain}


def _argv(ws: dict) -> list[str]:
    return ["evaluate", "--domain", ws["domain"], "--params", str(ws["params"]), "--cache", str(ws["cache"]),
            "--finetune", str(ws["models"]), "--baselines", str(ws["baselines"]), "--out", str(ws["out"])]


@pytest.mark.parametrize("workspace", ["medical", "satellite"], indirect=True)
def test_evaluate_stage_end_to_end(workspace: dict, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    domain = workspace["domain"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    # artifacts under tmp_path (the server default would be ./mlruns in the working directory)
    mlflow.create_experiment(f"medvit-{domain}", artifact_location=(tmp_path / "artifacts").as_uri())
    assert main(_argv(workspace)) == 0
    out = workspace["out"]
    stdout = capsys.readouterr().out
    assert "finetune" in stdout and "clip_zeroshot" in stdout and "AUROC macro" in stdout

    # metrics: strict JSON, the single-class label left out and counted, baselines nested with paired diffs
    metrics = _strict_json(out / "metrics.json")
    m = read_manifest(workspace["cache"])
    y = m.labels("test")
    s = pd.read_csv(workspace["models"] / "scores" / "test.csv").iloc[:, 1:].to_numpy()
    assert metrics["n_labels_skipped"] == 1
    assert metrics["test/auroc_macro"] == pytest.approx(np.mean([roc_auc_score(y[:, j], s[:, j]) for j in (0, 1)]),
                                                         abs=1e-6)
    assert metrics["test/auroc_macro_ci_low"] <= metrics["test/auroc_macro"] <= metrics["test/auroc_macro_ci_high"]
    assert "test/c/auroc" not in metrics and "test/a/auroc_ci_low" in metrics and "test/c/prevalence" in metrics
    for b in BASELINES:
        d = metrics[b]
        assert d["test/auroc_macro_diff"] == pytest.approx(metrics["test/auroc_macro"] - d["test/auroc_macro"])
        assert d["test/auroc_macro_diff_ci_low"] <= d["test/auroc_macro_diff_ci_high"]

    per_label = pd.read_csv(out / "per_label.csv")
    assert len(per_label) == 3 * 3 and {"auroc", "auroc_ci_low", "threshold", "ece"} <= set(per_label.columns)
    ft_a = per_label[(per_label["model"] == "finetune") & (per_label["label"] == "a")].iloc[0]
    assert ft_a["auroc"] == pytest.approx(metrics["test/a/auroc"], abs=1e-5)
    row = per_label[(per_label["model"] == "clip_zeroshot") & (per_label["label"] == "a")].iloc[0]
    assert row["auroc_ci_low"] <= row["auroc"] <= row["auroc_ci_high"]

    thresholds = _strict_json(out / "thresholds.json")
    assert thresholds["method"] == "f1" and set(thresholds["thresholds"]) == {"a", "b", "c"}
    assert thresholds["labels_skipped_test"] == ["c"]

    # plot data for dvc plots, and the figures
    roc = pd.read_csv(out / "plots" / "roc.csv")
    pr = pd.read_csv(out / "plots" / "pr.csv")
    assert list(roc.columns) == ["model", "label", "fpr", "tpr"]
    assert list(pr.columns) == ["model", "label", "recall", "precision"]
    assert set(roc["model"]) == {"finetune", *BASELINES} and set(roc["label"]) == {"a", "b"}
    figures = out / "figures"
    attention = sorted(p.name for p in figures.glob("attention_*.png"))
    assert attention == ["attention_0.png", "attention_1.png"]  # only 2 test images without burned-in text
    for p in [*figures.glob("*.png")]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {"roc.png", "pr.png", "reliability.png"} <= {p.name for p in figures.iterdir()}

    md = (out / "comparison.md").read_text()
    assert "| clip_zeroshot |" in md and "left out of every macro average: c" in md and "NOT PRETRAINED" in md
    assert "<table>" in (out / "comparison.html").read_text()

    # one MLflow run, linked by pipeline id, with the same metric names and the figures
    runs = mlflow.search_runs(experiment_names=[f"medvit-{domain}"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == f"evaluate-{domain}-{git_commit()[:7]}"
    tags = run.data.tags
    assert tags["finetune_pipeline_id"] == tags["zeroshot_pipeline_id"] == "pid123" and tags["stage"] == "evaluate"
    assert tags["finetune_run_id"] == "ft-run" and tags["zeroshot_run_id"] == "zs-run"
    assert tags["data_hash"] == m.digest() and tags["weights"] == "random-init" and tags["labels_skipped"] == "c"
    assert run.data.metrics["test/auroc_macro"] == pytest.approx(metrics["test/auroc_macro"])
    assert run.data.metrics["clip_zeroshot/test/auroc_macro_diff"] == pytest.approx(
        metrics["clip_zeroshot"]["test/auroc_macro_diff"])
    client = mlflow.MlflowClient()
    logged = {f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/roc.png", "figures/pr.png", "figures/reliability.png"} <= logged
    # medical pixels stay out of the tracking server; satellite overlays are logged
    assert any("attention" in p for p in logged) == (domain == "satellite")
    top = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"comparison.md", "comparison.html", "metrics.json", "plots"} <= top


def test_id_mismatch_fails_with_the_file_named(workspace: dict, capsys: pytest.CaptureFixture[str]) -> None:
    bad = workspace["baselines"] / "scores" / "linear_probe" / "test.csv"
    frame = pd.read_csv(bad)
    frame.iloc[1:].to_csv(bad, index=False)
    assert main(_argv(workspace)) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "missing from the table" in err and "Traceback" not in err
    assert not (workspace["out"] / "metrics.json").exists()
    assert not (workspace["out"].parent / "mlflow.db").exists()  # failed before opening a run


def test_unknown_labels_in_the_manifest_are_masked_and_counted(workspace: dict) -> None:
    """Empty label cells (ingest's ignored uncertain/blank entries) reach evaluate as unknown: masked, counted."""
    path = workspace["cache"] / "manifest.csv"
    frame = pd.read_csv(path)
    cols = [label_column(n) for n in ("a", "b")]
    hide = np.random.default_rng(1).random((len(frame), 2)) < 0.2
    frame[cols] = frame[cols].astype("float64").mask(hide)
    frame.to_csv(path, index=False)
    assert main(_argv(workspace)) == 0
    metrics = _strict_json(workspace["out"] / "metrics.json")
    m = read_manifest(workspace["cache"])
    y = m.labels("test")
    s = pd.read_csv(workspace["models"] / "scores" / "test.csv").iloc[:, 1:].to_numpy()
    k = np.isfinite(y[:, 0])
    assert 0 < (~k).sum() and metrics["test/a/n_known"] == k.sum() and metrics["test/c/n_known"] == len(y)
    assert metrics["test/n_unknown"] == int(np.isnan(y).sum())
    assert metrics["test/a/auroc"] == pytest.approx(roc_auc_score(y[k, 0], s[k, 0]), abs=1e-6)
    assert "unknown (ignored uncertain/blank) test label(s) are masked" in (workspace["out"] / "comparison.md").read_text()
    assert pd.read_csv(workspace["out"] / "per_label.csv")["n_known"].notna().all()


def test_review_material_subgroups_failures_and_data_description(workspace: dict, tmp_path: Path) -> None:
    """subgroups.csv + forest plot, failures/, demographics per split and intervals.json; medical pixels stay local."""
    path = workspace["cache"] / "manifest.csv"
    frame = pd.read_csv(path)
    frame["sex"] = np.where(frame["group"].astype(str).str[-1].isin(list("02468")), "F", "M")
    frame["site"] = "unknown"
    frame.to_csv(path, index=False)
    scores = workspace["models"] / "scores" / "test.csv"
    table = pd.read_csv(scores)
    table["c"] = 1.0  # c has no positive in test: every test image is a false positive of c
    table.to_csv(scores, index=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.create_experiment("medvit-medical", artifact_location=(tmp_path / "artifacts").as_uri())
    assert main(_argv(workspace)) == 0
    out = workspace["out"]
    m = read_manifest(workspace["cache"])
    test = m.split("test")
    sub = pd.read_csv(out / "subgroups.csv", keep_default_na=False)
    assert set(sub["model"]) == {"finetune", *BASELINES}
    assert set(sub["subgroup"]) == {"sex=F", "sex=M", "site=unknown"}
    ft = sub[sub["model"] == "finetune"].set_index("subgroup")
    assert ft.loc["sex=F", "n"] + ft.loc["sex=M", "n"] == len(test)
    assert ft.loc["site=unknown", "groups"] == test["group"].nunique()  # 8 test groups < min_groups 10
    assert (sub["interval"].str.startswith("too few groups for an interval")).all()
    assert (out / "figures" / "subgroups_forest.png").read_bytes()[:4] == b"\x89PNG"
    metrics = _strict_json(out / "metrics.json")
    assert metrics["test/ci_reliable"] == 0 and "Unreliable intervals" in (out / "comparison.md").read_text()
    assert (metrics["test/subgroups"], metrics["test/subgroups_without_interval"]) == (3, 3)
    assert metrics["test/subgroups_flagged"] == ft["flagged"].sum()
    assert _strict_json(out / "intervals.json")["n_groups"] == test["group"].nunique()
    cases = pd.read_csv(out / "failures" / "failures.csv", keep_default_na=False)
    fp_c = cases[(cases["label"] == "c") & (cases["kind"] == "false_positive")]
    assert fp_c["id"].tolist() == test["id"].iloc[:3].tolist()  # 3 = evaluate.n_failure_cases, ties in order
    # only the 2 test images free of burned-in text get an overlay
    assert fp_c["image"].tolist() == ["c_fp_1.png", "c_fp_2.png", ""]
    assert set(cases.loc[cases["image"] != "", "id"]) <= set(test["id"].iloc[:2])
    assert (out / "failures" / "c_fp_1.png").read_bytes()[:4] == b"\x89PNG"
    demo = pd.read_csv(out / "demographics.csv")
    for split in ("train", "val", "test"):
        assert demo[(demo["split"] == split) & (demo["attribute"] == "sex")]["count"].sum() == len(m.split(split))
    assert _strict_json(out / "data_description.json")["attributes_missing"] == [
        "age_band", "view", "manufacturer", "manufacturer_model"]
    run = mlflow.search_runs(experiment_names=["medvit-medical"], output_format="list")[0]
    client = mlflow.MlflowClient()
    figures = {f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/subgroups_forest.png" in figures
    failures = {f.path for f in client.list_artifacts(run.info.run_id, "failures")}
    assert failures == {"failures/failures.csv"}  # medical overlays not uploaded (upload_patient_pixels: false)
    top = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"subgroups.csv", "demographics.csv", "intervals.json", "data_description.json"} <= top
