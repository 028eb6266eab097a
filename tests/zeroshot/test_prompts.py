"""Prompt sets as data: resolution, defaults, hashing and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medvit.errors import UserError
from medvit.zeroshot.prompts import load_prompts

REPO_PROMPTS = Path(__file__).resolve().parents[2] / "medvit" / "zeroshot" / "prompts.yaml"


def test_repo_prompts_cover_the_sample_labels() -> None:
    med = load_prompts(REPO_PROMPTS, "medical", ["cardiomegaly", "effusion", "nodule", "pneumothorax"])
    assert med.defaulted == ()
    eff = med.labels[1]
    assert eff.display == "pleural effusion"
    assert "a chest x-ray showing pleural effusion" in eff.positive and "no pleural effusion" in eff.negative
    sat = load_prompts(REPO_PROMPTS, "satellite", ["water", "forest", "cropland", "urban", "bare"])
    assert sat.defaulted == ()
    assert sat.labels[4].positive == ("a satellite image of bare soil", "an aerial photograph of barren land")
    assert sat.labels[4].negative[0] == "a satellite image with no bare soil"  # default negatives kept


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "prompts.yaml"
    p.write_text(text)
    return p


def test_unlisted_labels_use_defaults_and_case_insensitive_keys(tmp_path: Path) -> None:
    p = _write(tmp_path, """
medical:
  templates: {positive: ["x-ray with {label}"], negative: ["x-ray without {label}"]}
  labels:
    Pleural_Thickening: {name: thick pleura}
""")
    ps = load_prompts(p, "medical", ["pleural thickening", "lung_mass"])
    assert ps.labels[0].positive == ("x-ray with thick pleura",)
    assert ps.labels[1].positive == ("x-ray with lung mass",) and ps.defaulted == ("lung_mass",)
    assert ps.texts() == ["x-ray with thick pleura", "x-ray without thick pleura", "x-ray with lung mass",
                          "x-ray without lung mass"]


def test_hash_tracks_the_resolved_prompts_only(tmp_path: Path) -> None:
    base = """
medical:
  templates: {positive: ["{label}"], negative: ["no {label}"]}
satellite:
  templates: {positive: ["%s"], negative: ["no {label}"]}
"""
    a = load_prompts(_write(tmp_path, base % "{label}"), "medical", ["a"]).digest()
    b = load_prompts(_write(tmp_path, base % "sat {label}"), "medical", ["a"]).digest()
    assert a == b  # editing the other domain does not change this domain's hash
    c = load_prompts(_write(tmp_path, base.replace('negative: ["no {label}"]', 'negative: ["not {label}"]', 1)),
                     "medical", ["a"]).digest()
    assert c != a


@pytest.mark.parametrize("text,match", [
    ("satellite: {}", "no 'medical:' section"),
    ("medical: {templates: {positive: [], negative: ['no {label}']}}", "non-empty list"),
    ("medical: {templates: {positive: ['a photo'], negative: ['no {label}']}}", "lacks {label}"),
    ("medical: {templates: {positive: ['{label}'], negative: 'no {label}'}}", "list of prompt strings"),
    ("medical: {templates: {positive: ['{label}'], negative: ['no {label}']}, labels: {a: {nmae: x}}}",
     "unknown keys"),
])
def test_malformed_prompt_files_are_user_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        load_prompts(_write(tmp_path, text), "medical", ["a"])


def test_missing_prompt_file_names_the_param(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="zeroshot.prompts"):
        load_prompts(tmp_path / "nope.yaml", "medical", ["a"])


def test_default_prompts_path_resolves_outside_the_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medvit.stages.zeroshot import prompts_file

    monkeypatch.chdir(tmp_path)
    assert prompts_file("medvit/zeroshot/prompts.yaml") == REPO_PROMPTS
    (tmp_path / "mine.yaml").write_text("medical: {}")
    assert prompts_file("mine.yaml") == Path("mine.yaml")  # a user's file relative to the working directory
