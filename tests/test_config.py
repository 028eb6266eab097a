"""Typed params: the repo's params.yaml validates; unknown keys and bad types are named."""

from pathlib import Path

import pytest
import yaml

from medvit.config import RECORD_ENV, ConfigError, Params, load_params, parse_params, record_reads, unrecorded

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


def test_value_reads_a_dotted_key() -> None:
    p = load_params(REPO / "params.yaml")
    assert p.value("finetune.augment.satellite") == {"flips": True, "rot90": True, "noise_std": 0.02}
    assert p.value("ingest.split_fractions.val") == 0.2
    assert p.value("finetune.domains.satellite.epochs") == 12 and p.value("finetune.domains.medical.epochs") is None
    with pytest.raises(KeyError):
        p.value("finetune.augment.ocean")


def test_dump_for_leaves_out_other_domains() -> None:
    p = load_params(REPO / "params.yaml")
    med = p.finetune.for_domain("medical").dump_for("medical")
    assert list(med["augment"]) == ["medical"] and med["epochs"] == p.finetune.epochs
    sat = p.zeroshot.dump_for("satellite")
    assert "satellite" in sat and "medical" not in sat and sat["batch_size"] == p.zeroshot.batch_size


def test_reads_are_recorded_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "reads.tsv"
    monkeypatch.setenv(RECORD_ENV, str(log))
    p = load_params(REPO / "params.yaml")
    try:
        record_reads("finetune", "satellite")
        cfg = p.finetune.for_domain("satellite")
        assert cfg.epochs == 12 and cfg.augment.satellite.flips is True
        _ = cfg.epochs, cfg.head, p.ingest.split_fractions  # sections alone are not reads; repeats are recorded once
        p.zeroshot.satellite.dump_for("satellite")
        with unrecorded():
            _ = p.evaluate.seed
    finally:
        record_reads("", "")  # env still set: re-create, then switch off below
        monkeypatch.delenv(RECORD_ENV)
        record_reads("", "")
    lines = [ln.split("\t") for ln in log.read_text().splitlines()]
    assert {(s, d) for s, d, _ in lines} == {("finetune", "satellite")}
    keys = [k for _, _, k in lines]
    assert len(keys) == len(set(keys))
    zs_keys = {f"zeroshot.satellite.{k}" for k in type(p.zeroshot.satellite).model_fields}
    assert set(keys) == {"finetune.domains.satellite.epochs", "finetune.epochs", "finetune.augment.satellite.flips",
                         *zs_keys}


def test_empty_domain_override_is_recorded_as_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "reads.tsv"
    monkeypatch.setenv(RECORD_ENV, str(log))
    p = load_params(REPO / "params.yaml")
    record_reads("finetune", "medical")
    try:
        p.finetune.for_domain("medical")
    finally:
        monkeypatch.delenv(RECORD_ENV)
        record_reads("", "")
    assert log.read_text() == "finetune\tmedical\tfinetune.domains.medical\n"


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
