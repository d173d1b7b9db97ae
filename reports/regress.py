"""Score regressions against a stored baseline, for users' CI: which metric of which cell moved, and by which rule.

Baseline file: {"cells": {key: {metric: {"mean", "ci_low", "ci_high", and optionally "tolerance" or "ci_factor"}}}},
where a key is a cell directory relative to the summaries' root ("." for a single summary.json). An entry's rule says
how far its mean may drop: "tolerance" an absolute amount; "ci_factor" K times the baseline's 95% CI half-width
(mean - ci_low; ci_high - mean for a rise), which scales with the metric's own spread; neither, the flags' rule, else
the CI itself (K = 1). Two-sided checks also fail a rise by more than the same amount. Only score metrics (higher is
better) are checked; compute is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError, require
from harness.store import SUMMARY
from reports.load import read_json_file

FIELDS = ("mean", "ci_low", "ci_high")
RULES = ("tolerance", "ci_factor")


@dataclass(frozen=True)
class Regression:
    """One failed check: a metric that dropped (or rose, two-sided), or a cell or metric the summaries lack."""

    cell: str
    metric: str
    detail: str
    rose: bool = False

    def __str__(self) -> str:
        return f"{'CHANGED' if self.rose else 'REGRESSED'} {self.cell} {self.metric}: {self.detail}"


@dataclass(frozen=True)
class Rule:
    """How far a mean may move from its baseline: `tolerance` (absolute) or `ci_factor` x the CI half-width."""

    tolerance: float | None
    ci_factor: float
    source: str

    def allowed(self, entry: dict, rise: bool) -> float:
        if self.tolerance is not None:
            return self.tolerance
        return self.ci_factor * (entry["ci_high"] - entry["mean"] if rise else entry["mean"] - entry["ci_low"])

    def detail(self, now: float, entry: dict, rise: bool) -> str:
        """Why `now` fails against `entry`: the comparison made, then the rule and where it came from."""
        mean, low, high = (entry[f] for f in FIELDS)
        sign, op = ("+", ">") if rise else ("-", "<")
        if self.tolerance is not None:
            return (
                f"current mean {now:.6g} {op} baseline mean {mean:.6g} {sign} {self.tolerance:g}"
                f" (rule: absolute tolerance {self.tolerance:g} from {self.source})"
            )
        stored = f"baseline {mean:.6g} [{low:.6g}, {high:.6g}]"
        if self.ci_factor == 1:
            bound = f"baseline CI {'high' if rise else 'low'} {high if rise else low:.6g}"
            return f"current mean {now:.6g} {op} {bound} ({stored}; rule: outside the baseline's 95% CI)"
        half = high - mean if rise else mean - low
        return (
            f"current mean {now:.6g} {op} baseline mean {mean:.6g} {sign} {self.ci_factor:g} x CI half-width"
            f" {half:.6g} ({stored}; rule: {self.ci_factor:g} x the baseline's 95% CI half-width, from {self.source})"
        )


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_summaries(path: Path) -> dict[str, dict[str, dict]]:
    """Cell key -> the "metrics" section of its summary: one summary.json (key "."), or every one under a directory."""
    path = Path(path)
    if path.is_dir():
        files = {p.parent.relative_to(path).as_posix(): p for p in sorted(path.rglob(SUMMARY))}
        require(bool(files), f"no {SUMMARY} under {path}; pass a finished cell's {SUMMARY} or a directory of cells")
    elif path.is_file():
        files = {".": path}
    else:
        raise UsageError(f"summary {path} does not exist; pass a {SUMMARY} or a directory of finished cells")
    current = {}
    for key, file in files.items():
        metrics = read_json_file(file, "summary").get("metrics")
        require(isinstance(metrics, dict), f'summary {file} has no "metrics" object; pass a {SUMMARY} a study wrote')
        current[key] = metrics
    return current


def read_baseline(path: Path) -> dict[str, dict[str, dict]]:
    """The baseline's cells, every entry checked: numbers for mean and CI, at most one rule, a number >= 0."""
    path = Path(path)
    require(path.exists(), f"baseline {path} does not exist; create it with --update")
    cells = read_json_file(path, "baseline").get("cells")
    require(isinstance(cells, dict), f'baseline {path} has no "cells" object; regenerate it with --update')
    for key, metrics in cells.items():
        require(isinstance(metrics, dict), f"baseline {path}: cell {key!r} must map metrics to entries")
        for metric, entry in metrics.items():
            where = f"baseline {path}: cell {key!r} metric {metric!r}"
            require(isinstance(entry, dict), f"{where} must be an object with {', '.join(FIELDS)}")
            bad = [f for f in FIELDS if not is_number(entry.get(f))]
            require(not bad, f"{where} needs a number for {', '.join(bad)}; fix it or regenerate with --update")
            rules = [r for r in RULES if r in entry]
            require(len(rules) <= 1, f"{where} has both tolerance and ci_factor; keep one")
            for rule in rules:
                require(is_number(entry[rule]) and entry[rule] >= 0, f"{where}: {rule} must be a number >= 0")
    return cells


def rule_for(entry: dict, tolerance: float | None, ci_factor: float | None) -> Rule:
    """The entry's own rule, else the flags' (--tolerance, --ci-factor), else the baseline's CI (K = 1)."""
    if "tolerance" in entry:
        return Rule(float(entry["tolerance"]), 1.0, "baseline entry")
    if "ci_factor" in entry:
        return Rule(None, float(entry["ci_factor"]), "baseline entry")
    if tolerance is not None:
        return Rule(tolerance, 1.0, "--tolerance")
    return Rule(None, 1.0, "default") if ci_factor is None else Rule(None, ci_factor, "--ci-factor")


def check(
    current: dict[str, dict],
    baseline: dict[str, dict],
    tolerance: float | None,
    ci_factor: float | None = None,
    two_sided: bool = False,
) -> list[Regression]:
    """Every baseline metric whose mean dropped by more than its rule allows (or, two-sided, rose by more);
    a missing cell or metric regresses too."""
    found = []
    for key, metrics in baseline.items():
        if key not in current:
            found.append(Regression(key, "(all metrics)", "cell missing from the current summaries"))
            continue
        for metric, entry in metrics.items():
            stat = current[key].get(metric)
            now = stat.get("mean") if isinstance(stat, dict) else None
            if not is_number(now):
                found.append(Regression(key, metric, "metric missing from the current summary"))
                continue
            rule = rule_for(entry, tolerance, ci_factor)
            if now < entry["mean"] - rule.allowed(entry, rise=False):
                found.append(Regression(key, metric, rule.detail(now, entry, rise=False)))
            elif two_sided and now > entry["mean"] + rule.allowed(entry, rise=True):
                found.append(Regression(key, metric, rule.detail(now, entry, rise=True), rose=True))
    return found


def unchecked(current: dict[str, dict], baseline: dict[str, dict]) -> list[str]:
    """Current "cell metric" pairs the baseline does not cover (new since it was written)."""
    return [f"{key} {m}" for key, metrics in current.items() for m in metrics if m not in baseline.get(key, {})]


def updated_baseline(
    current: dict[str, dict], old: dict[str, dict], tolerance: float | None, ci_factor: float | None = None
) -> dict:
    """A baseline from the current summaries, keeping each entry's stored rule; `tolerance` or `ci_factor` gives
    one to entries with none. Metrics without a mean (no samples) are left out."""
    cells = {}
    for key, metrics in sorted(current.items()):
        entries = {}
        for metric, stat in metrics.items():
            if not (isinstance(stat, dict) and all(is_number(stat.get(f)) for f in FIELDS)):
                continue
            entry = {f: float(stat[f]) for f in FIELDS}
            stored = old.get(key, {}).get(metric, {})
            kept = {r: stored[r] for r in RULES if r in stored}
            if not kept and tolerance is not None:
                kept = {"tolerance": tolerance}
            elif not kept and ci_factor is not None:
                kept = {"ci_factor": ci_factor}
            entries[metric] = entry | kept
        cells[key] = entries
    return {"cells": cells}
