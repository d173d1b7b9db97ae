"""A finished study read back from disk: its cells (manifest, summary, samples) and seed-pooled per-prompt scores."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.stats import summarize
from harness.store import MANIFEST, SUMMARY, find_cells, read_json, read_samples

# method families in the order tables and legends list them
FAMILIES = ("plain", "bon", "cbs", "eft", "tuned")


def read_json_file(path: Path, what: str) -> dict:
    """A JSON object from `path`, or a one-line UsageError saying which file is unreadable and why."""
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"{what} {path} is not readable JSON ({err}); fix or regenerate it") from None
    if not isinstance(data, dict):
        raise UsageError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Cell:
    """One finished (task, strong model, method setting, seed) run."""

    path: Path
    task: str
    strong: str
    method: str  # family: plain, bon, cbs, eft, tuned
    label: str  # family with parameters, e.g. "cbs(W=4,K=4,L=5)"
    params: dict[str, Any]
    seed: int
    summary: dict
    samples: list[dict]

    def order(self) -> tuple:
        """Sort key for methods: family order, then parameter values numerically ("inf"/null last)."""
        return method_order(self.method, self.params, self.label)


def method_order(method: str, params: dict[str, Any], label: str) -> tuple:
    """Families in FAMILIES order (unknown ones after), settings of one family by their parameter values."""
    family = FAMILIES.index(method) if method in FAMILIES else len(FAMILIES)
    return family, tuple(_param_key(v) for v in params.values()), label


def _param_key(value: Any) -> tuple[int, float, str]:
    if value is None or value == "inf":
        return 0, math.inf, ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, float(value), ""
    return 1, 0.0, str(value)


@dataclass
class Study:
    """The finished cells of a study, the incomplete ones it skipped, and each task's strong models in config order."""

    root: Path
    cells: list[Cell]
    incomplete: list[Path]
    strong_order: dict[str, list[str]]

    def tasks(self) -> list[str]:
        return sorted({c.task for c in self.cells})

    def strongs(self, task: str) -> list[str]:
        """Strong models with finished cells for `task`, in the order the config lists them."""
        present = {c.strong for c in self.cells if c.task == task}
        return [s for s in self.strong_order.get(task, []) if s in present]

    def strong_models(self, task: str) -> list[str]:
        """The task's strong models proper: those with cells of a method other than the guide sampled alone (whose
        cells name the guide's tuned model as their strong model)."""
        others = {c.strong for c in self.cells if c.task == task and c.method != "guide"}
        return [s for s in self.strongs(task) if s in others]

    def labels(self, task: str | None = None) -> list[str]:
        """Method labels present (for one task, or the whole study), in method order."""
        keys = {c.label: c.order() for c in self.cells if task is None or c.task == task}
        return sorted(keys, key=keys.__getitem__)

    def family(self, label: str) -> str:
        return next(c.method for c in self.cells if c.label == label)

    def group(self, task: str, strong: str, label: str) -> list[Cell]:
        """Every seed of one method setting, by seed."""
        found = [c for c in self.cells if (c.task, c.strong, c.label) == (task, strong, label)]
        return sorted(found, key=lambda c: c.seed)


def load_study(root: Path) -> Study:
    """Read every cell under `root`; cells without summary.json are incomplete and set aside."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"runs directory {root} does not exist; pass the directory a study wrote its cells to")
    paths = find_cells(root)
    if not paths:
        raise UsageError(f"no cells under {root} (no */{MANIFEST}); pass the directory a study wrote its cells to")
    cells, incomplete, configs = [], [], []
    for path in paths:
        if not (path / SUMMARY).exists():
            incomplete.append(path)
            continue
        manifest = read_json_file(path / MANIFEST, "manifest")
        cells.append(_cell(path, manifest, read_json_file(path / SUMMARY, "summary")))
        configs.append(manifest.get("config") or {})
    if not cells:
        raise UsageError(
            f"no finished cells under {root}: {len(incomplete)} cell(s) lack {SUMMARY}; let the runs finish"
        )
    return Study(root, cells, incomplete, _strong_order(cells, configs))


def _cell(path: Path, manifest: dict, summary: dict) -> Cell:
    info = manifest.get("cell")
    missing = [k for k in ("task", "strong", "method", "label", "seed") if not isinstance(info, dict) or k not in info]
    if missing:
        raise UsageError(f"manifest {path / MANIFEST} has no cell.{missing[0]}; it was not written by a study run")
    return Cell(
        path=path,
        task=str(info["task"]),
        strong=str(info["strong"]),
        method=str(info["method"]),
        label=str(info["label"]),
        params=dict(info.get("params") or {}),
        seed=int(info["seed"]),
        summary=summary,
        samples=summarised(read_samples(path), summary),
    )


def summarised(samples: list[dict], summary: dict) -> list[dict]:
    """The samples a summary covers (its `ids`): a cell's log may also hold samples outside the plan it summarises.
    Summaries written before they named their samples (identity version 1) cover the whole log."""
    if "ids" not in summary:
        return samples
    ids = set(summary["ids"])
    return [r for r in samples if r.get("id") in ids]


def _strong_order(cells: list[Cell], configs: list[dict]) -> dict[str, list[str]]:
    """Per task, the strong models as the first config listing them wrote them, then any others sorted."""
    order: dict[str, list[str]] = defaultdict(list)
    for config in configs:
        tasks = config.get("tasks")
        for task, spec in tasks.items() if isinstance(tasks, dict) else []:
            listed = spec.get("strong") if isinstance(spec, dict) else None
            if not order[task] and isinstance(listed, list):
                order[task] = [str(s) for s in listed]
    for task in {c.task for c in cells}:
        order[task] += sorted({c.strong for c in cells if c.task == task} - set(order[task]))
    return dict(order)


def score(record: dict, key: str) -> float | None:
    """A sample's score `key`, or None where the record has none."""
    value = (record.get("scores") or {}).get(key)
    return None if value is None else float(value)


def scores_by_sample(cells: Iterable[Cell], key: str) -> dict[tuple[int, str], float]:
    """(seed, prompt id) -> score `key`, over the given cells; a repeated id keeps its last record."""
    out = {}
    for cell in cells:
        for record in cell.samples:
            value = score(record, key)
            if value is not None:
                out[cell.seed, str(record["id"])] = value
    return out


def per_prompt(values: dict[tuple[int, str], float]) -> dict[str, float]:
    """Prompt id -> its score averaged over seeds, ids sorted: what seed-pooled statistics resample."""
    by_id: dict[str, list[float]] = defaultdict(list)
    for (_, pid), value in values.items():
        by_id[pid].append(value)
    return {pid: sum(v) / len(v) for pid, v in sorted(by_id.items())}


def pooled(cells: Iterable[Cell], key: str) -> dict:
    """Summary of score `key` over prompts, each prompt's score first averaged over seeds (CIs reflect prompts)."""
    return summarize(list(per_prompt(scores_by_sample(cells, key)).values()))


def mean_compute(cells: Iterable[Cell], *keys: str) -> float | None:
    """Mean over every sample of the sum of the given compute fields (e.g. strong plus guide tokens)."""
    totals = [sum(float((r.get("compute") or {}).get(k, 0)) for k in keys) for c in cells for r in c.samples]
    return sum(totals) / len(totals) if totals else None
