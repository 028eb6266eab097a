"""Typed params: the repo's params.yaml validates; unknown keys and bad types are named."""

from pathlib import Path

import pytest
import yaml

from medvit.config import ConfigError, Params, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_validate() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.finetune.model.startswith("deit3_")
    assert params.ingest.satellite.band_names == ("B2", "B3", "B4", "B8")


def test_params_are_frozen() -> None:
    params = parse_params({})
    with pytest.raises(Exception):
        params.finetune.epochs = 3  # type: ignore[misc]


def test_unknown_key_is_named_with_suggestion() -> None:
    with pytest.raises(ConfigError) as err:
        parse_params({"finetune": {"lrr": 0.1}}, "params.yaml")
    msg = str(err.value)
    assert "finetune.lrr" in msg and "did you mean 'lr'" in msg and "params.yaml" in msg


def test_unknown_nested_key() -> None:
    with pytest.raises(ConfigError, match=r"ingest\.satellite\.tile_sise.*did you mean 'tile_size'"):
        parse_params({"ingest": {"satellite": {"tile_sise": 32}}})


def test_unknown_section() -> None:
    with pytest.raises(ConfigError, match="trainer: unknown key"):
        parse_params({"trainer": {}})


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"finetune\.epochs"):
        parse_params({"finetune": {"epochs": "many"}})


def test_split_fractions_must_sum_to_one() -> None:
    with pytest.raises(ConfigError, match="sum to 1"):
        parse_params({"ingest": {"split_fractions": {"train": 0.5, "val": 0.2, "test": 0.2}}})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("finetune: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_section_hash_tracks_section_only(tmp_path: Path) -> None:
    data = yaml.safe_load((REPO / "params.yaml").read_text())
    a = parse_params(data)
    data["evaluate"]["n_bootstrap"] = 7
    b = parse_params(data)
    assert a.section_hash("finetune") == b.section_hash("finetune")
    assert a.section_hash("evaluate") != b.section_hash("evaluate")


def test_finetune_domain_overrides_apply_to_their_domain_only() -> None:
    p = parse_params({"finetune": {"epochs": 40, "batch_size": 16, "domains": {"satellite": {"epochs": 12}}}})
    sat, med = p.finetune.for_domain("satellite"), p.finetune.for_domain("medical")
    assert (sat.epochs, sat.batch_size) == (12, 16)
    assert (med.epochs, med.batch_size) == (40, 16)
    assert sat.domains == {} and med.domains == {}  # the effective config carries no overrides


def test_finetune_domain_override_keys_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"finetune\.domains\.satellite\.epohcs.*did you mean 'epochs'"):
        parse_params({"finetune": {"domains": {"satellite": {"epohcs": 3}}}})
    with pytest.raises(ConfigError, match=r"finetune\.domains\.satelite"):
        parse_params({"finetune": {"domains": {"satelite": {"epochs": 3}}}})
