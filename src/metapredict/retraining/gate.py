"""The champion/challenger gate: a pure decision from bootstrap estimates and a config."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from metapredict.retraining.bootstrap import PairedComparison
from metapredict.retraining.config import GateConfig


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateResult:
    promote: bool
    reason: str
    checks: list[Check]

    def as_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote,
            "reason": self.reason,
            "checks": [asdict(c) for c in self.checks],
        }


def _ci(low: float, high: float, confidence: float) -> str:
    return f"[{confidence:.0%} CI {low:+.4f}, {high:+.4f}]"


def decide(comparison: PairedComparison, gate: GateConfig) -> GateResult:
    """Promote when the challenger is better by the margin and not worse calibrated.

    * ``improvement``: challenger - champion on ``gate.metric`` >= ``gate.min_improvement``;
    * ``significant`` (when ``gate.require_ci_above_zero``): the lower bound of the paired
      bootstrap interval of that difference is above zero;
    * ``calibration:<metric>``: challenger - champion <= its tolerance (lower is better).

    A metric that could not be computed (NaN) fails its check: no evidence, no promotion.
    """
    checks: list[Check] = []
    conf = comparison.confidence
    diff = comparison.difference.get(gate.metric)
    if diff is None or not math.isfinite(diff.value):
        checks.append(Check("improvement", False, f"{gate.metric} could not be computed"))
    else:
        checks.append(
            Check(
                "improvement",
                diff.value >= gate.min_improvement,
                f"{gate.metric} {diff.value:+.4f} {_ci(diff.low, diff.high, conf)} "
                f"(needs >= {gate.min_improvement:+.4f})",
            )
        )
        if gate.require_ci_above_zero:
            ok = math.isfinite(diff.low) and diff.low > 0
            checks.append(
                Check(
                    "significant",
                    ok,
                    f"lower bound of the {gate.metric} difference {diff.low:+.4f} "
                    f"({'above' if ok else 'not above'} zero)",
                )
            )
    for name, tolerance in sorted(gate.calibration.items()):
        cal = comparison.difference.get(name)
        if cal is None or not math.isfinite(cal.value):
            checks.append(Check(f"calibration:{name}", False, f"{name} could not be computed"))
            continue
        checks.append(
            Check(
                f"calibration:{name}",
                cal.value <= tolerance,
                f"{name} {cal.value:+.4f} {_ci(cal.low, cal.high, conf)} "
                f"(may worsen by at most {tolerance:+.4f})",
            )
        )
    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "kept: " + "; ".join(f"{c.name} failed: {c.detail}" for c in failed)
    else:
        reason = "promoted: " + "; ".join(c.detail for c in checks)
    return GateResult(promote=not failed, reason=reason, checks=checks)
