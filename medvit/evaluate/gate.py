"""The quality gate of the register stage: a pure function of evaluate's test metrics.

The fine-tuned model's test macro AUROC must reach ``min_auroc`` and beat the best
baseline's by ``min_margin``, on intervals that rest on at least ``min_groups`` test
groups (patients / scenes): evaluate records ``test/n_groups`` and ``min_groups`` in
metrics.json, and fewer groups is missing evidence (``medvit.evaluate.intervals``),
so the gate refuses and says why rather than passing on an interval that means nothing.
No I/O and no MLflow here: the register stage reads the metrics (``evaluate.outputs``),
applies the gate and records the outcome.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from medvit.metrics import PRIMARY

AUROC_KEY = f"test/{PRIMARY}"


def finite(x: Any) -> bool:
    """Whether ``x`` is a number other than NaN (evaluate drops NaN, so absent reads as undefined too)."""
    return x is not None and not (isinstance(x, float) and math.isnan(x))


@dataclass(frozen=True)
class Gate:
    """Outcome of the quality gate, with the numbers behind it."""

    passed: bool
    auroc: float
    auroc_ci: tuple[float | None, float | None]
    min_auroc: float
    min_margin: float
    best_baseline: str | None
    best_baseline_auroc: float | None
    margin: float | None
    reasons: list[str] = field(default_factory=list)
    n_groups: int | None = None
    min_groups: int | None = None

    @property
    def ci_reliable(self) -> bool | None:
        """Whether the CI rests on at least ``min_groups`` groups; None when evaluate did not record it."""
        if self.n_groups is None or self.min_groups is None:
            return None
        return self.n_groups >= self.min_groups

    def summary(self) -> str:
        """One line for logs and tags."""
        return ("passed: " if self.passed else "refused: ") + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (NaN becomes null)."""
        d = asdict(self)
        d["auroc"] = self.auroc if finite(self.auroc) else None
        d["auroc_ci"] = [v if finite(v) else None for v in self.auroc_ci]
        d["ci_reliable"] = self.ci_reliable
        return d


def apply_gate(
    finetune: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]], min_auroc: float, min_margin: float
) -> Gate:
    """Test macro AUROC must reach ``min_auroc`` and beat the best baseline's by ``min_margin``.

    A NaN or missing AUROC (every label single-class on test) refuses; a NaN
    baseline is ignored; with no usable baseline the margin cannot be checked,
    which refuses too. A test split with fewer than ``min_groups`` groups
    (``test/n_groups`` < ``min_groups``, both from metrics.json) refuses: its interval
    is missing evidence. Without those keys the check is reported as not made.

    Args:
        finetune: the fine-tuned model's metrics (``test/auroc_macro`` and its ``_ci_low``/``_ci_high``,
            ``test/n_groups``, ``min_groups``).
        baselines: per baseline, its metrics.
        min_auroc: lowest acceptable test macro AUROC.
        min_margin: lowest acceptable margin over the best baseline (may be negative).
    """
    auroc = float(finetune[AUROC_KEY]) if finite(finetune.get(AUROC_KEY)) else float("nan")
    ci = (finetune.get(f"{AUROC_KEY}_ci_low"), finetune.get(f"{AUROC_KEY}_ci_high"))
    usable = {n: float(m[AUROC_KEY]) for n, m in baselines.items() if finite(m.get(AUROC_KEY))}
    best = max(usable, key=usable.__getitem__) if usable else None
    best_auroc = usable[best] if best else None
    margin = auroc - best_auroc if best_auroc is not None and not math.isnan(auroc) else None
    reasons, passed = [], True
    n_groups = int(finetune["test/n_groups"]) if finite(finetune.get("test/n_groups")) else None
    min_groups = int(finetune["min_groups"]) if finite(finetune.get("min_groups")) else None
    few = n_groups is not None and min_groups is not None and n_groups < min_groups
    unreliable = f", unreliable: {n_groups} groups" if few else ""
    ci_txt = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f}{unreliable})" if finite(ci[0]) and finite(ci[1]) else ""
    if math.isnan(auroc):
        passed = False
        reasons.append("test macro AUROC is undefined (no label has both classes on test)")
    elif auroc < min_auroc:
        passed = False
        reasons.append(f"test macro AUROC {auroc:.3f}{ci_txt} is below min_auroc {min_auroc:.3f}")
    else:
        reasons.append(f"test macro AUROC {auroc:.3f}{ci_txt} >= min_auroc {min_auroc:.3f}")
    if best is None:
        passed = False
        reasons.append("no baseline with a defined test macro AUROC: the min_margin check cannot be made")
    elif margin is not None:
        verdict = ">=" if margin >= min_margin else "is below"
        passed = passed and margin >= min_margin
        reasons.append(
            f"margin over the best baseline {best} ({best_auroc:.3f}) is {margin:+.3f}, {verdict} min_margin "
            f"{min_margin:+.3f}"
        )
    if n_groups is None or min_groups is None:
        reasons.append("interval reliability not checked: metrics.json records no test/n_groups or min_groups "
                       "(re-run evaluate)")
    elif few:
        passed = False
        reasons.append(f"missing evidence: the test CI comes from {n_groups} group(s), fewer than "
                       f"evaluate.min_groups {min_groups} (too few groups for an interval); add test groups")
    return Gate(passed, auroc, ci, min_auroc, min_margin, best, best_auroc, margin, reasons, n_groups, min_groups)
