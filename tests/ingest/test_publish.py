"""Outputs appear whole or not at all: a failed or killed ingest never leaves a manifest DVC would accept."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ingest_inputs import all_bytes, ingest_cfg, medical_raw

import medvit.ingest.publish as publish_mod
from medvit.data.manifest import read_manifest
from medvit.errors import UserError
from medvit.ingest import ingest


def test_reject_fraction_fails_and_keeps_previous_outputs(tmp_path: Path) -> None:
    raw = medical_raw(tmp_path / "raw")
    out = tmp_path / "cache"
    _, cfg = ingest_cfg(tmp_path)
    ingest("medical", raw, raw / "labels.csv", out, cfg)
    before = {p.name: d for p, d in all_bytes(out)}
    _, strict = ingest_cfg(tmp_path, max_reject_fraction=0.1)
    with pytest.raises(UserError, match=r"rejected 4 of 28 .*max_reject_fraction = 0.1.*burned-in annotation"):
        ingest("medical", raw, raw / "labels.csv", out, strict)
    assert {p.name: d for p, d in all_bytes(out)} == before
    assert not list(tmp_path.glob(".cache.ingest-*"))


def test_killed_publish_leaves_no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = medical_raw(tmp_path / "raw", n_patients=6)
    out = tmp_path / "cache"
    _, cfg = ingest_cfg(tmp_path)
    ingest("medical", raw, raw / "labels.csv", out, cfg)
    fresh = tmp_path / "fresh"
    ingest("medical", raw, raw / "labels.csv", fresh, cfg)
    real_replace, calls = os.replace, []

    def dying_replace(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed half-way through moving outputs in
        real_replace(src, dst)

    monkeypatch.setattr(publish_mod.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        publish_mod.publish(fresh, out)
    assert not (out / "manifest.csv").exists()  # nothing DVC or finetune would accept
    with pytest.raises(FileNotFoundError):
        read_manifest(out)


def test_temp_folder_removes_leftovers_of_a_killed_run(tmp_path: Path) -> None:
    out = tmp_path / "cache"
    (tmp_path / ".cache.ingest-killed" / "shards").mkdir(parents=True)
    (out / ".shards.old-123").mkdir(parents=True)
    (tmp_path / ".other.ingest-x").mkdir()  # another output's temporary folder is not ours to remove
    tmp = publish_mod.temp_folder(out)
    assert tmp.is_dir() and tmp.parent == tmp_path and tmp.name.startswith(".cache.ingest-")
    assert not (tmp_path / ".cache.ingest-killed").exists() and not (out / ".shards.old-123").exists()
    assert (tmp_path / ".other.ingest-x").is_dir()
