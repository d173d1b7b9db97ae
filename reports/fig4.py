"""The paper's Figure 4 from judged AlpacaEval cells: length-controlled (LC) win rate per strong model and method,
one panel per guide pair, with the guide's tuned model alone as a dashed line; and its compute-matched companion, LC
against the tokens each method read per sample.

It reads what `w2s run` writes into every judged cell, `judge-<name>/winrate.json` (harness.judging), and draws one
pair of figures per judge. Cells of an alpacaeval task entry without a guide (plain sampling, URIAL alone) are drawn
in every guide's panel. Over seeds, a point is the mean LC and its error bar the standard error of that mean,
sqrt(sum of squared standard errors) / seeds, the seeds taken as independent estimates. Numbers computed with
stand-in LC files are labelled approximate, and a judge other than the leaderboard's is labelled not comparable with
the leaderboard, in each figure's title and table.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.figure import Figure

from harness.judging import NOT_COMPARABLE, WINRATE, label
from harness.store import MANIFEST
from reports.figures import COMPUTE, _legend, _panels, _styled, method_styles
from reports.load import Cell, Study, mean_compute, read_json_file

TASK = "alpacaeval"
GUIDE_ALONE = "guide"  # the method whose cells are the guide's tuned model sampled alone
NO_GUIDE = "no guide"  # the panel of a study whose alpacaeval cells use no guide at all
LC = "LC win rate (%)"
APPROXIMATE = "approximate (LC from stand-in files)"


@dataclass(frozen=True)
class Point:
    """One method setting of one strong model (or the guide alone) under one judge, pooled over seeds."""

    lc: float | None  # mean LC win rate over seeds, percent
    se: float | None  # its standard error
    win_rate: float | None  # mean raw win rate, percent
    tokens: float | None  # mean tokens read per sample (strong + guide)
    seeds: int
    approximate: bool
    n_failed: int  # verdicts the judge failed to give, over seeds


@dataclass
class Panel:
    """One guide pair's panel: its points by (strong model, method label), and the guide alone."""

    guide: str
    points: dict[tuple[str, str], Point] = field(default_factory=dict)
    reference: Point | None = None
    reference_model: str | None = None


@dataclass
class Fig4:
    """Figure 4's numbers under one judge."""

    judge: str
    identity: dict
    strongs: list[str]
    labels: list[str]
    panels: list[Panel]

    @property
    def approximate(self) -> bool:
        points = [p for panel in self.panels for p in [*panel.points.values(), panel.reference] if p is not None]
        return any(p.approximate for p in points)

    @property
    def title(self) -> str:
        """What the numbers are and who judged them, with the labels that apply."""
        text = f"AlpacaEval 2.0 {LC}, judge {label(self.identity)}"
        return f"{text}; {APPROXIMATE}" if self.approximate else text

    def wrapped_title(self, suffix: str = "") -> str:
        """The title broken into lines that fit the figure's width (about 48 characters per panel column)."""
        return textwrap.fill(self.title + suffix, width=48 * min(len(self.panels), 3))


def task_entry(cell: Cell) -> dict:
    """The cell's task entry as its manifest's resolved config records it."""
    config = read_json_file(cell.path / MANIFEST, "manifest").get("config") or {}
    entry = (config.get("tasks") or {}).get(cell.task)
    return entry if isinstance(entry, dict) else {}


def alpaca_cells(study: Study) -> dict[Path, str | None]:
    """The study's alpacaeval cells (task type alpacaeval, whatever the entry's name), each with its guide's name."""
    out = {}
    for cell in study.cells:
        entry = task_entry(cell)
        if (entry.get("task") or cell.task) == TASK:
            out[cell.path] = entry.get("guide")
    return out


def judgements(cell: Cell) -> dict[str, dict]:
    """Judge name -> the cell's winrate.json under that judge, for every judge that finished it."""
    found = {}
    for path in sorted(cell.path.glob(f"judge-*/{WINRATE}")):
        found[path.parent.name.removeprefix("judge-")] = read_json_file(path, "win rates")
    return found


def pool(cells: Iterable[Cell], judge: str) -> Point | None:
    """A method setting's seeds under one judge as one point; None where no seed has an LC win rate."""
    cells = list(cells)
    results = [r for c in cells if (r := judgements(c).get(judge)) and r.get("length_controlled_winrate") is not None]
    if not results:
        return None
    lcs = [float(r["length_controlled_winrate"]) for r in results]
    ses = [r.get("lc_standard_error") for r in results]
    raws = [float(r["win_rate"]) for r in results if r.get("win_rate") is not None]
    return Point(
        lc=sum(lcs) / len(lcs),
        se=math.sqrt(sum(float(s) ** 2 for s in ses)) / len(ses) if None not in ses else None,
        win_rate=sum(raws) / len(raws) if raws else None,
        tokens=mean_compute(cells, "strong_tokens", "guide_tokens"),
        seeds=len(results),
        approximate=any(bool(r.get("approximate")) for r in results),
        n_failed=sum(int(r.get("n_failed") or 0) for r in results),
    )


def judges(study: Study) -> dict[str, dict]:
    """Every judge with a winrate.json in an alpacaeval cell, with its identity, by name."""
    cells = alpaca_cells(study)
    found: dict[str, dict] = {}
    for cell in (c for c in study.cells if c.path in cells):
        for name, result in judgements(cell).items():
            found.setdefault(name, result.get("judge") or {"name": name})
    return dict(sorted(found.items()))


def fig4_data(study: Study, judge: str, identity: dict) -> Fig4:
    """Figure 4's points under `judge`: a panel per guide (guide-free cells in each), the guide alone as reference."""
    guide_of = alpaca_cells(study)
    cells = [c for c in study.cells if c.path in guide_of]
    guides = list(dict.fromkeys(g for c in cells if (g := guide_of[c.path]) is not None)) or [NO_GUIDE]
    strongs = list(dict.fromkeys(s for t in study.tasks() for s in study.strongs(t) if t in {c.task for c in cells}))
    methods = {c.label: c.order() for c in cells if c.method != GUIDE_ALONE}
    labels = sorted(methods, key=methods.__getitem__)
    panels = []
    for guide in guides:
        panel = Panel(guide)
        mine = [c for c in cells if guide_of[c.path] in (None, guide if guide != NO_GUIDE else None)]
        alone = [c for c in mine if c.method == GUIDE_ALONE]
        if alone:
            panel.reference, panel.reference_model = pool(alone, judge), alone[0].strong
        for strong in strongs:
            for method in labels:
                point = pool((c for c in mine if (c.strong, c.label) == (strong, method)), judge)
                if point is not None:
                    panel.points[strong, method] = point
        panels.append(panel)
    strongs = [s for s in strongs if any((s, m) in p.points for p in panels for m in labels)]
    return Fig4(judge, identity, strongs, labels, panels)


def _reference_line(ax, panel: Panel) -> None:
    if panel.reference is not None and panel.reference.lc is not None:
        ax.axhline(panel.reference.lc, color="black", linestyle="--", linewidth=1, label=f"guide alone ({GUIDE_ALONE})")


@_styled
def fig4(data: Fig4, styles: dict[str, dict]) -> Figure:
    """LC win rate (mean, +-1 standard error) per strong model, a series per method, a panel per guide pair."""
    fig, axes = _panels(len(data.panels))
    dodge = 0.5 / max(len(data.labels), 1)
    for ax, panel in zip(axes, data.panels, strict=True):
        for j, method in enumerate(data.labels):
            points = [(i, panel.points.get((s, method))) for i, s in enumerate(data.strongs)]
            points = [(i, p) for i, p in points if p is not None]
            if not points:
                continue
            xs = [i + (j - (len(data.labels) - 1) / 2) * dodge for i, _ in points]
            yerr = [p.se or 0.0 for _, p in points]
            ax.errorbar(xs, [p.lc for _, p in points], yerr=yerr, label=method, markersize=4, linewidth=0,
                        elinewidth=1, capsize=2, **styles[method])  # fmt: skip
        _reference_line(ax, panel)
        ax.set_xticks(range(len(data.strongs)), data.strongs, rotation=20 if len(data.strongs) > 2 else 0)
        ax.set_xlim(-0.5, len(data.strongs) - 0.5)
        ax.set_title(panel.guide if panel.reference_model is None else f"{panel.guide} ({panel.reference_model})")
        ax.set_xlabel("strong model")
    axes[0].set_ylabel(LC)
    fig.suptitle(data.wrapped_title())
    _legend(fig, axes, [*data.labels, f"guide alone ({GUIDE_ALONE})"])
    return fig


@_styled
def fig4_compute(data: Fig4, styles: dict[str, dict]) -> Figure:
    """LC win rate against tokens read per sample, a point per strong model and method (named by its strong
    model), a panel per guide pair; the guide alone as a dashed line and a black point."""
    fig, axes = _panels(len(data.panels))
    for ax, panel in zip(axes, data.panels, strict=True):
        for (strong, method), p in panel.points.items():
            if p.tokens is None:
                continue
            ax.errorbar([p.tokens], [p.lc], yerr=[p.se or 0.0], label=method, markersize=4, capsize=2, **styles[method])
            ax.annotate(strong, (p.tokens, p.lc), xytext=(3, 3), textcoords="offset points", fontsize=5.5)
        _reference_line(ax, panel)
        ref = panel.reference
        if ref is not None and ref.tokens is not None:
            ax.plot([ref.tokens], [ref.lc], marker="o", color="black", markersize=4, linestyle="none")
        ax.set_xscale("log")
        ax.set_title(panel.guide)
        ax.set_xlabel(COMPUTE)
    axes[0].set_ylabel(LC)
    fig.suptitle(data.wrapped_title(", against compute"))
    _legend(fig, axes, [*data.labels, f"guide alone ({GUIDE_ALONE})"])
    return fig


def table(data: Fig4) -> str:
    """Figure 4's numbers as markdown: a row per guide, strong model and method (LC +- SE, raw win rate, tokens)."""

    def fmt(value: float | None, digits: int = 1) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    lines = [f"# {data.title}", ""]
    if not data.identity.get("comparable_to_leaderboard"):
        lines += [f"These numbers are {NOT_COMPARABLE}: only the gpt-4-turbo judge's are.", ""]
    if data.approximate:
        lines += ["Approximate: the LC model's files were stand-ins, not the hub's (`approximate` per row).", ""]
    header = ["guide", "strong model", "method", "LC", "± SE", "win rate", "tokens read", "seeds", "failed", "approx."]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for panel in data.panels:
        rows = list(panel.points.items())
        if panel.reference is not None:
            rows.append(((panel.reference_model or "", GUIDE_ALONE), panel.reference))
        for (strong, method), p in rows:
            cells = [panel.guide, strong, method, fmt(p.lc), fmt(p.se), fmt(p.win_rate), fmt(p.tokens, 0)]
            cells += [str(p.seeds), str(p.n_failed), "yes" if p.approximate else "no"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_fig4(study: Study, out: Path, save) -> tuple[list[Path], list[str]]:
    """Figure 4, its compute companion and its table for every judge of the study's alpacaeval cells: the paths
    written, and notes on what was left out."""
    if not alpaca_cells(study):
        return [], []
    found = judges(study)
    if not found:
        return [], [f"no fig4: no alpacaeval cell has been judged yet (no judge-*/{WINRATE})"]
    styles = method_styles(study)
    written, notes = [], []
    for name, identity in found.items():
        data = fig4_data(study, name, identity)
        if not data.strongs:
            notes.append(f"no fig4-{name}: judge {name} gave no LC win rate (too few verdicts?)")
            continue
        written += save(fig4(data, styles), out, f"fig4-{name}")
        written += save(fig4_compute(data, styles), out, f"fig4-compute-{name}")
        path = out / f"fig4-{name}.md"
        path.write_text(table(data), encoding="utf-8")
        written.append(path)
    return written, notes
