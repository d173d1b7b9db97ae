"""Score regressions against a stored baseline, for users' CI: which metric of which cell dropped, and by which rule.

Baseline file: {"cells": {key: {metric: {"mean", "ci_low", "ci_high", "tolerance" (optional)}}}}, where a key is a
cell directory relative to the summaries' root ("." for a single summary.json). Only score metrics (higher is better)
are checked; compute is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError, require
from harness.store import SUMMARY
from reports.load import read_json_file

FIELDS = ("mean", "ci_low", "ci_high")


@dataclass(frozen=True)
class Regression:
    """One failed check: a metric that dropped, or a cell or metric the baseline has and the summaries lack."""

    cell: str
    metric: str
    detail: str

    def __str__(self) -> str:
        return f"REGRESSED {self.cell} {self.metric}: {self.detail}"


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
    """The baseline's cells, every entry checked: numbers for mean and CI, a tolerance >= 0 where one is given."""
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
            tolerance = entry.get("tolerance", 0.0)
            require(is_number(tolerance) and tolerance >= 0, f"{where}: tolerance must be a number >= 0")
    return cells


def check(current: dict[str, dict], baseline: dict[str, dict], tolerance: float | None) -> list[Regression]:
    """Every baseline metric that regressed: mean below baseline mean - tolerance (the entry's, else `tolerance`),
    or, with no tolerance at all, below the baseline's CI low; a missing cell or metric regresses too."""
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
            tol = entry.get("tolerance", tolerance)
            if tol is not None and now < entry["mean"] - tol:
                source = "baseline entry" if "tolerance" in entry else "--tolerance"
                found.append(
                    Regression(
                        key,
                        metric,
                        f"current mean {now:.6g} < baseline mean {entry['mean']:.6g} - {tol:g}"
                        f" (rule: absolute tolerance {tol:g} from {source})",
                    )
                )
            elif tol is None and now < entry["ci_low"]:
                found.append(
                    Regression(
                        key,
                        metric,
                        f"current mean {now:.6g} < baseline CI low {entry['ci_low']:.6g} (baseline {entry['mean']:.6g}"
                        f" [{entry['ci_low']:.6g}, {entry['ci_high']:.6g}]; rule: below the baseline's 95% CI)",
                    )
                )
    return found


def unchecked(current: dict[str, dict], baseline: dict[str, dict]) -> list[str]:
    """Current "cell metric" pairs the baseline does not cover (new since it was written)."""
    return [f"{key} {m}" for key, metrics in current.items() for m in metrics if m not in baseline.get(key, {})]


def updated_baseline(current: dict[str, dict], old: dict[str, dict], tolerance: float | None) -> dict:
    """A baseline from the current summaries, keeping each stored tolerance; `tolerance` fills entries with none.
    Metrics without a mean (no samples) are left out."""
    cells = {}
    for key, metrics in sorted(current.items()):
        entries = {}
        for metric, stat in metrics.items():
            if not (isinstance(stat, dict) and all(is_number(stat.get(f)) for f in FIELDS)):
                continue
            entry = {f: float(stat[f]) for f in FIELDS}
            kept = old.get(key, {}).get(metric, {}).get("tolerance", tolerance)
            if kept is not None:
                entry["tolerance"] = kept
            entries[metric] = entry
        cells[key] = entries
    return {"cells": cells}
