"""Markdown tables of a study: every cell, then every method setting pooled over seeds, each against base sampling."""

from __future__ import annotations

from collections.abc import Sequence

from harness.stats import paired
from reports.load import Cell, Study, mean_compute, per_prompt, pooled, scores_by_sample

DASH = "—"
BASE = "plain"  # the method every other one is compared with
FIRST_METRICS = ("gold", "guide")


def fmt_stat(stat: dict | None) -> str:
    """A summary as "mean [ci_low, ci_high]", or a dash where there is none."""
    if not stat or stat.get("mean") is None:
        return DASH
    return f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, {stat['ci_high']:.3f}]"


def fmt_diff(diff: dict | None) -> tuple[str, str]:
    """A paired comparison as ("+mean [ci_low, ci_high]", "p"), or dashes."""
    if not diff or diff.get("mean_diff") is None:
        return DASH, DASH
    return f"{diff['mean_diff']:+.3f} [{diff['ci_low']:+.3f}, {diff['ci_high']:+.3f}]", f"{diff['p_value']:.3g}"


def fmt_number(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def paired_gold(cells: Sequence[Cell], base: Sequence[Cell]) -> dict | None:
    """Gold of `cells` minus gold of `base`, paired by prompt over the seeds and prompts both have (seed-averaged
    per prompt first); None when there is nothing to pair."""
    a, b = scores_by_sample(cells, "gold"), scores_by_sample(base, "gold")
    shared = a.keys() & b.keys()
    if not shared:
        return None
    pa, pb = per_prompt({k: a[k] for k in shared}), per_prompt({k: b[k] for k in shared})
    return paired(list(pa.values()), [pb[pid] for pid in pa])


def metric_names(study: Study) -> list[str]:
    """Score metrics any summary reports: gold and guide first, then task extras alphabetically."""
    names = {m for c in study.cells for m in (c.summary.get("metrics") or {})}
    return [m for m in FIRST_METRICS if m in names] + sorted(names - set(FIRST_METRICS))


def _rows(study: Study) -> list[tuple[str, str, str]]:
    """(task, strong, label) in report order: tasks sorted, strong models in config order, methods in family order."""
    return [(t, s, label) for t in study.tasks() for s in study.strongs(t) for label in study.labels(t)]


def _markdown(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def cell_table(study: Study) -> list[str]:
    """One row per finished cell, with its summary and its paired gold difference to the same seed's plain cell."""
    metrics = metric_names(study)
    rows = []
    for task, strong, label in _rows(study):
        base = {c.seed: c for c in study.group(task, strong, BASE)}
        for cell in study.group(task, strong, label):
            compute = cell.summary.get("compute") or {}
            diff = None if label == BASE or cell.seed not in base else paired_gold([cell], [base[cell.seed]])
            rows.append(
                [task, strong, label, str(cell.seed), str(cell.summary.get("n", DASH))]
                + [fmt_stat((cell.summary.get("metrics") or {}).get(m)) for m in metrics]
                + [fmt_number((compute.get(k) or {}).get("mean")) for k in ("strong_tokens", "guide_tokens")]
                + list(fmt_diff(diff))
            )
    header = ["task", "strong", "method", "seed", "n", *metrics, "strong tokens", "guide tokens"]
    return _markdown([*header, f"Δ gold vs {BASE}", "p"], rows)


def pooled_table(study: Study) -> list[str]:
    """One row per (task, strong, method setting): each prompt's scores averaged over seeds, then summarised."""
    metrics = metric_names(study)
    rows = []
    for task, strong, label in _rows(study):
        cells = study.group(task, strong, label)
        if not cells:
            continue
        base = study.group(task, strong, BASE)
        diff = None if label == BASE or not base else paired_gold(cells, base)
        stats = {m: pooled(cells, m) for m in {*metrics, "gold"}}
        rows.append(
            [task, strong, label, ", ".join(str(c.seed) for c in cells), str(stats["gold"]["n"])]
            + [fmt_stat(stats[m]) for m in metrics]
            + [fmt_number(mean_compute(cells, k)) for k in ("strong_tokens", "guide_tokens")]
            + list(fmt_diff(diff))
        )
    header = ["task", "strong", "method", "seeds", "prompts", *metrics, "strong tokens", "guide tokens"]
    return _markdown([*header, f"Δ gold vs {BASE}", "p"], rows)


def render(study: Study) -> str:
    """The whole table.md: a key to the columns, the per-cell table, the pooled table and the cells skipped."""
    lines = [
        f"# Results: {study.root.name}",
        "",
        "Scores: mean [95% bootstrap CI] over prompts; higher is better. Tokens: mean positions read per sample by the"
        " strong model and by the guide (tuned + untuned). Δ gold vs plain: gold minus base sampling's gold, paired by"
        " prompt id (same task, strong model and seed), mean [95% bootstrap CI]; p: two-sided sign-flip test.",
        "",
        "## Per cell",
        "",
        *cell_table(study),
        "",
        "## Pooled over seeds",
        "",
        "Each prompt's scores are averaged over seeds first, so CIs reflect prompts, not repeated seeds. Δ pairs"
        " prompts over the seeds both settings have.",
        "",
        *pooled_table(study),
    ]
    if study.incomplete:
        lines += ["", "## Skipped (incomplete: no summary.json)", ""]
        lines += [f"- {p.relative_to(study.root).as_posix()}" for p in study.incomplete]
    return "\n".join(lines) + "\n"
