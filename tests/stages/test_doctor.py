"""`medvit doctor`: weights resolved against a locally built HF cache, tracking reachability, de-id key
source, GPL decoder plugins, GDAL, and the exit code."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import rasterio
import yaml

from medvit.cli import main

REPO = Path(__file__).resolve().parents[2]
DEIT = "timm/deit3_base_patch16_384.fb_in22k_ft_in1k"
REMOTECLIP = "hf-hub:chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt"


def _cache_file(cache: Path, repo: str, filename: str) -> Path:
    """One file in huggingface_hub's cache layout: models--org--name/{refs/main, snapshots/<rev>/file}."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text("0123abcd")
    path = root / "snapshots" / "0123abcd" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An offline HF cache holding DeiT3 (tagged) and RemoteCLIP, and a params file that needs both."""
    cache = tmp_path / "hub"
    _cache_file(cache, DEIT, "model.safetensors")
    _cache_file(cache, "chendelong/RemoteCLIP", "RemoteCLIP-ViT-B-32.pt")
    clip = tmp_path / "clip-local"
    clip.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MEDVIT_DEID_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["finetune"].update(weights=DEIT, allow_random_init=False)
    params["zeroshot"]["allow_random_init"] = False
    params["zeroshot"]["medical"]["model"] = str(clip)
    assert params["zeroshot"]["satellite"]["weights"] == REMOTECLIP
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def _doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["doctor", "--params", "params.yaml"])
    return code, capsys.readouterr().out


def _line(out: str, key: str) -> str:
    return next(ln for ln in out.splitlines() if ln.strip().startswith(key))


def test_tagged_timm_id_and_remoteclip_weights_are_found_in_the_cache(env: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _doctor(capsys)
    assert code == 0, out
    assert "HF cache" in _line(out, "finetune.weights") and "model.safetensors" in _line(out, "finetune.weights")
    assert "RemoteCLIP-ViT-B-32.pt" in _line(out, "zeroshot.satellite.weights")
    assert "local path" in _line(out, "zeroshot.medical.model")
    assert f"GDAL                 {rasterio.__gdal_version__}" in out
    assert "server: none (local store)" in out and "source: demo-default" in out


def test_missing_weights_without_random_init_exit_non_zero(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = yaml.safe_load((env / "params.yaml").read_text())
    params["finetune"]["weights"] = "timm/deit3_base_patch16_384.fb_in1k"  # another tag: not cached
    (env / "params.yaml").write_text(yaml.safe_dump(params))
    code, out = _doctor(capsys)
    assert code == 1
    assert "HF_HUB_OFFLINE=1" in _line(out, "finetune.weights") and "will FAIL" in _line(out, "finetune.weights")
    assert "finetune.weights cannot resolve" in out

    params["finetune"]["allow_random_init"] = True
    (env / "params.yaml").write_text(yaml.safe_dump(params))
    code, out = _doctor(capsys)
    assert code == 0 and "random init allowed" in _line(out, "finetune.weights")


def test_tracking_server_reachability(env: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        _, out = _doctor(capsys)
        assert "server: reachable" in out
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")  # closed now
    _, out = _doctor(capsys)
    assert f"server: UNREACHABLE - tracking server 127.0.0.1:{port} unreachable" in out


def test_deid_key_source_and_gpl_plugin(env: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    (env / ".medvit-deid-key").write_text("a-site-secret\n")
    _, out = _doctor(capsys)
    assert "source: file" in out and "a-site-secret" not in out and "GPL decoder plugins: none" in out
    monkeypatch.setenv("MEDVIT_DEID_KEY", "another-secret")
    # an installed distribution is found through its metadata on sys.path
    dist = env / "site" / "pylibjpeg_libjpeg-2.3.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pylibjpeg-libjpeg\nVersion: 2.3.0\n")
    monkeypatch.syspath_prepend(str(env / "site"))
    _, out = _doctor(capsys)
    assert "source: env" in out and "another-secret" not in out
    assert "GPL decoder plugins: pylibjpeg-libjpeg 2.3.0 (GPLv3" in out
