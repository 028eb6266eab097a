"""Per-subgroup metrics, paired differences from the rest of test, the min_groups marking and the flag rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from medvit.evaluate.bootstrap import group_weights, percentile_ci
from medvit.evaluate.subgroups import COLUMNS, attribute_values, subgroup_table

# Subgroup A: y 1 0 1 0, scores .9 .2 .4 .6 -> AUROC 3/4, AP (1 + 2/3)/2, at 0.5: sens 1/2, spec 1/2.
# Subgroup B: y 1 0, scores .8 .1 -> AUROC 1, AP 1, sens 1, spec 1.
Y = np.array([[1], [0], [1], [0], [1], [0]], dtype=float)
S = np.array([[0.9], [0.2], [0.4], [0.6], [0.8], [0.1]])
SITE = np.array(["A", "A", "A", "A", "B", "B"])
GROUPS = [f"p{i}" for i in range(6)]  # one image per patient


def _table(min_groups: int, min_auroc: float = 0.0, n_bootstrap: int = 300, **models: np.ndarray) -> pd.DataFrame:
    scores = models or {"finetune": S}
    return subgroup_table(Y, scores, {m: np.array([0.5]) for m in scores}, GROUPS, {"site": SITE},
                          n_bootstrap=n_bootstrap, seed=0, ci_level=0.95, min_groups=min_groups, min_auroc=min_auroc)


def test_subgroup_metrics_match_a_hand_computed_case() -> None:
    t = _table(min_groups=2).set_index("value")
    assert list(_table(min_groups=2).columns) == list(COLUMNS)
    a, b = t.loc["A"], t.loc["B"]
    assert (a["n"], a["groups"], a["prevalence"], b["n"], b["groups"]) == (4, 4, 0.5, 2, 2)
    assert a["auroc"] == pytest.approx(0.75) and a["ap"] == pytest.approx((1 + 2 / 3) / 2)
    assert (a["sensitivity"], a["specificity"]) == (0.5, 0.5)
    assert (b["auroc"], b["ap"], b["sensitivity"], b["specificity"]) == (1.0, 1.0, 1.0, 1.0)
    assert a["auroc_rest"] == 1.0 and a["auroc_diff"] == pytest.approx(-0.25)
    assert b["auroc_rest"] == pytest.approx(0.75) and b["auroc_diff"] == pytest.approx(0.25)
    assert a["subgroup"] == "site=A" and a["interval"] == "ok" and a["n_labels"] == 1


def test_subgroup_difference_ci_is_the_paired_group_bootstrap() -> None:
    """The diff CI equals sklearn on the same group resamples restricted to the subgroup and to the rest."""
    w = group_weights(GROUPS, 300, 0)
    sub, rest = SITE == "A", SITE == "B"

    def auc(mask: np.ndarray, b: int) -> float:
        wb = w[b, mask]
        yb = Y[mask, 0]
        if (wb * yb).sum() == 0 or (wb * (1 - yb)).sum() == 0:
            return math.nan
        return roc_auc_score(yb, S[mask, 0], sample_weight=wb)

    diffs = np.array([auc(sub, b) - auc(rest, b) for b in range(len(w))])
    lo, hi = percentile_ci(diffs, 0.95)
    a = _table(min_groups=2).set_index("value").loc["A"]
    assert (a["auroc_diff_ci_low"], a["auroc_diff_ci_high"]) == pytest.approx((lo, hi))
    subs = np.array([auc(sub, b) for b in range(len(w))])
    assert (a["auroc_ci_low"], a["auroc_ci_high"]) == pytest.approx(percentile_ci(subs, 0.95))


def test_too_few_groups_gives_no_interval_and_names_the_count() -> None:
    t = _table(min_groups=10, min_auroc=0.8).set_index("value")
    a, b = t.loc["A"], t.loc["B"]
    assert a["interval"] == "too few groups for an interval (4 groups)"
    assert b["interval"] == "too few groups for an interval (2 groups)"
    for row in (a, b):
        assert all(math.isnan(row[c]) for c in ("auroc_ci_low", "auroc_ci_high", "auroc_diff_ci_low", "ap_ci_high"))
    # still listed with counts and point estimates; below the gate's AUROC flags on the point estimate
    assert (a["n"], a["groups"], a["auroc"]) == (4, 4, 0.75)
    assert a["flagged"] == 1 and "below register.min_auroc 0.800" in a["flag_reason"]
    assert b["flagged"] == 0 and b["flag_reason"] == ""


def test_a_rest_with_too_few_groups_has_no_interval_either() -> None:
    # A has 4 groups, its rest (B) 2: the paired difference needs both sides
    a = _table(min_groups=3).set_index("value").loc["A"]
    assert a["interval"] == "too few groups for an interval (rest of test: 2 groups)"
    assert math.isnan(a["auroc_diff_ci_low"])


def test_flag_rule_difference_ci_excludes_zero() -> None:
    rng = np.random.default_rng(0)
    n_groups, per = 60, 2
    groups = np.repeat([f"g{i}" for i in range(n_groups)], per)
    site = np.where(np.repeat(np.arange(n_groups), per) < 30, "good", "poor")
    sex = rng.choice(["F", "M"], size=len(groups))
    y = (rng.random((len(groups), 2)) < 0.5).astype(float)
    noise = rng.random(y.shape)
    s = np.where((site == "good")[:, None], 0.8 * y + 0.2 * noise, noise)  # poor site: chance scores
    t = subgroup_table(y, {"finetune": s}, {"finetune": np.array([0.5, 0.5])}, groups, {"site": site, "sex": sex},
                       n_bootstrap=400, seed=1, ci_level=0.95, min_groups=10, min_auroc=0.0)
    t = t.set_index("subgroup")
    poor, good = t.loc["site=poor"], t.loc["site=good"]
    assert poor["interval"] == "ok" and poor["auroc_diff_ci_high"] < 0
    assert poor["flagged"] == 1 and "lower than the rest" in poor["flag_reason"]
    assert good["flagged"] == 1 and "higher than the rest" in good["flag_reason"]
    for value in ("F", "M"):  # sex is unrelated to performance: its difference CI holds 0
        row = t.loc[f"sex={value}"]
        assert row["auroc_diff_ci_low"] < 0 < row["auroc_diff_ci_high"] and row["flagged"] == 0
    # and a gate above every subgroup's AUROC flags them all on the point estimate
    strict = subgroup_table(y, {"finetune": s}, {"finetune": np.array([0.5, 0.5])}, groups, {"sex": sex},
                            n_bootstrap=0, seed=1, ci_level=0.95, min_groups=10, min_auroc=0.999)
    assert strict["flagged"].tolist() == [1, 1]


def test_every_model_gets_its_rows() -> None:
    t = _table(2, finetune=S, clip_zeroshot=1 - S)
    assert sorted(t["model"].unique()) == ["clip_zeroshot", "finetune"] and len(t) == 4
    clip_a = t[(t["model"] == "clip_zeroshot") & (t["value"] == "A")].iloc[0]
    assert clip_a["auroc"] == pytest.approx(0.25)


def test_attribute_values_derive_buckets_seasons_and_unknown() -> None:
    frame = pd.DataFrame({"sex": ["F", None, "", "M"], "nodata_fraction": [0.0, 0.05, 0.2, 0.4],
                          "month": [1, 4, 7, "unknown"]})
    values, missing = attribute_values(frame, ["sex", "nodata_fraction", "season", "country"])
    assert values["sex"].tolist() == ["F", "unknown", "unknown", "M"]
    assert values["nodata_fraction"].tolist() == ["0", "0-0.1", "0.1-0.25", ">0.25"]
    assert values["season"].tolist() == ["DJF", "MAM", "JJA", "unknown"]
    assert missing == ["country"]


def test_forest_plot_draws_rows_with_and_without_intervals(tmp_path) -> None:
    from medvit.evaluate.plots import save_forest

    t = _table(min_groups=2, finetune=S, clip_zeroshot=1 - S)
    t.loc[t["value"] == "B", ["auroc_ci_low", "auroc_ci_high"]] = np.nan  # as for too few groups
    png = save_forest(t, tmp_path / "forest.png", 0.8)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = save_forest(t.iloc[:0], tmp_path / "empty.png")  # no attribute in the manifest
    assert empty.stat().st_size > 0
