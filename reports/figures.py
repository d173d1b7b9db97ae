"""Paper figures of a study: gold reward by strong model (Fig. 3), reward against compute, proxy against gold, and
for AlpacaEval studies the LC win rate figures (Fig. 4, reports.fig4).

Every figure uses one colour family per method (plain grey, bon blue, cbs orange-red, eft green, tuned purple),
shaded by parameter setting, so a method looks the same in every figure and task. Figures are built on
matplotlib's object API (no pyplot, no global backend) and sized for a paper column: 3.3 in per panel, fonts >= 7 pt.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.load import Study, mean_compute, pooled, score

COLORMAPS = {"plain": "Greys", "bon": "Blues", "cbs": "OrRd", "eft": "Greens", "tuned": "Purples", "urial": "RdPu"}
MARKERS = {"plain": "o", "bon": "s", "cbs": "^", "eft": "D", "tuned": "*", "urial": "P"}
OTHER_COLORMAP, OTHER_MARKER = "YlOrBr", "v"
PANEL_WIDTH, PANEL_HEIGHT, LEGEND_HEIGHT = 3.3, 2.4, 0.55  # inches
RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable and searchable in camera-ready PDFs
}
GOLD = "gold reward"
COMPUTE = "tokens read per sample (strong + guide)"
PROXY = "guide reward (proxy the search maximises)"


def method_styles(study: Study) -> dict[str, dict]:
    """Label -> colour and marker. Settings of a family get shades of its colour, light to dark in method order;
    deterministic from the labels present, and the same for every task of the study."""
    by_family: dict[str, list[str]] = {}
    for label in study.labels():
        by_family.setdefault(study.family(label), []).append(label)
    styles = {}
    for family, labels in by_family.items():
        cmap = matplotlib.colormaps[COLORMAPS.get(family, OTHER_COLORMAP)]
        shades = np.linspace(0.5, 0.9, len(labels)) if len(labels) > 1 else [0.75]
        for label, shade in zip(labels, shades, strict=True):
            styles[label] = {"color": cmap(float(shade)), "marker": MARKERS.get(family, OTHER_MARKER)}
    return styles


def _styled(build: Callable[..., Figure | None]) -> Callable[..., Figure | None]:
    """Build the figure under the paper-column style."""

    @functools.wraps(build)
    def wrapper(*args, **kwargs) -> Figure | None:
        with matplotlib.rc_context(RC):
            return build(*args, **kwargs)

    return wrapper


def _panels(count: int) -> tuple[Figure, list[Axes]]:
    """A figure of `count` panels sharing a y axis, at most three per row, with room for a legend beneath."""
    ncols = min(count, 3)
    nrows = math.ceil(count / ncols)
    fig = Figure(figsize=(PANEL_WIDTH * ncols, PANEL_HEIGHT * nrows + LEGEND_HEIGHT), layout="constrained")
    axes = list(fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel())
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _legend(fig: Figure, axes: list[Axes], order: list[str]) -> None:
    """One legend for all panels, beneath them, in method order."""
    handles = {}
    for ax in axes:
        artists, labels = ax.get_legend_handles_labels()
        handles.update(zip(labels, artists, strict=True))
    shown = [label for label in order if label in handles]
    rows = max(1, math.ceil(len(shown) / (2 * min(len(axes), 3))))  # two entries per panel width, rows balanced
    ncol = max(1, math.ceil(len(shown) / rows))
    fig.legend([handles[label] for label in shown], shown, loc="outside lower center", ncol=ncol, frameon=False)


def _interval(stat: dict) -> tuple[float, float]:
    """Error-bar lengths below and above the mean."""
    return stat["mean"] - stat["ci_low"], stat["ci_high"] - stat["mean"]


GUIDE = "guide"  # the guide's tuned model sampled alone: a reference line, not a strong model


@_styled
def fig3(study: Study, tasks: list[str], styles: dict[str, dict]) -> Figure:
    """The paper's Figure 3, a panel per task: gold reward (mean and 95% CI over prompts, seeds pooled per prompt)
    per strong model, a series per method, and the tuned guide sampled alone as a dashed line with its CI shaded."""
    fig, axes = _panels(len(tasks))
    order: list[str] = []
    for ax, task in zip(axes, tasks, strict=True):
        strongs, labels = study.strong_models(task), study.labels(task)
        series = [label for label in labels if study.family(label) != GUIDE]
        order += [label for label in labels if label not in order]
        dodge = 0.5 / max(len(series), 1)
        for j, label in enumerate(series):
            points = [(i, pooled(study.group(task, s, label), "gold")) for i, s in enumerate(strongs)]
            points = [(i, stat) for i, stat in points if stat["mean"] is not None]
            if not points:
                continue
            xs = [i + (j - (len(series) - 1) / 2) * dodge for i, _ in points]
            ys = [stat["mean"] for _, stat in points]
            yerr = np.array([_interval(stat) for _, stat in points]).T
            ax.errorbar(xs, ys, yerr=yerr, label=label, markersize=4, linewidth=1, capsize=2, **styles[label])
        guide_cells = [c for c in study.cells if c.task == task and c.method == GUIDE]
        if guide_cells:
            stat = pooled(guide_cells, "gold")
            name = f"{GUIDE} ({guide_cells[0].strong} alone)"
            ax.axhline(stat["mean"], color="black", linestyle="--", linewidth=1, label=GUIDE)
            ax.axhspan(stat["ci_low"], stat["ci_high"], color="black", alpha=0.08, linewidth=0)
            ax.annotate(name, (0.01, stat["mean"]), xycoords=("axes fraction", "data"), va="bottom", fontsize=6)
        ax.set_xticks(range(len(strongs)), strongs, rotation=20 if len(strongs) > 3 else 0)
        ax.set_xlim(-0.5, len(strongs) - 0.5)
        ax.set_xlabel("strong model")
        ax.set_title(task)
    axes[0].set_ylabel(f"{GOLD} (mean, 95% CI)")
    _legend(fig, axes, order)
    return fig


@_styled
def compute_figure(study: Study, task: str, styles: dict[str, dict]) -> Figure:
    """Gold reward (mean, 95% CI) against mean strong + guide tokens per sample, a panel per strong model."""
    strongs, labels = study.strongs(task), study.labels(task)
    fig, axes = _panels(len(strongs))
    for ax, strong in zip(axes, strongs, strict=True):
        for label in labels:
            cells = study.group(task, strong, label)
            stat, tokens = pooled(cells, "gold"), mean_compute(cells, "strong_tokens", "guide_tokens")
            if stat["mean"] is None or not tokens:
                continue
            yerr = np.array([_interval(stat)]).T
            ax.errorbar([tokens], [stat["mean"]], yerr=yerr, label=label, markersize=5, capsize=2, **styles[label])
        ax.set_xscale("log")
        ax.set_title(strong)
        ax.set_xlabel(COMPUTE)
    axes[0].set_ylabel(GOLD)
    fig.suptitle(f"{task}: {GOLD} (mean, 95% CI) against compute")
    _legend(fig, axes, labels)
    return fig


@_styled
def proxy_figure(study: Study, task: str, styles: dict[str, dict]) -> Figure | None:
    """Per-sample guide reward against gold reward and each method's mean, a panel per strong model; None when no
    cell of the task has guide scores. Proxy rising while gold stays flat is reward hacking."""
    strongs, labels = study.strongs(task), study.labels(task)
    fig, axes = _panels(len(strongs))
    plotted = False
    for ax, strong in zip(axes, strongs, strict=True):
        for label in labels:
            records = [r for c in study.group(task, strong, label) for r in c.samples]
            pairs = [(score(r, "guide"), score(r, "gold")) for r in records]
            pts = np.array([p for p in pairs if None not in p], dtype=float).reshape(-1, 2)
            if not len(pts):
                continue
            style = styles[label]
            ax.scatter(
                *pts.T, s=5, alpha=0.3, linewidths=0, color=style["color"], marker=style["marker"], rasterized=True
            )
            ax.scatter(*pts.mean(axis=0), s=45, edgecolors="black", linewidths=0.8, zorder=3, label=label, **style)
            plotted = True
        ax.set_title(strong)
        ax.set_xlabel(PROXY)
    if not plotted:
        return None
    axes[0].set_ylabel(GOLD)
    fig.suptitle(f"{task}: proxy against {GOLD} (dots: samples, outlined: method means)")
    _legend(fig, axes, labels)
    return fig


def save(fig: Figure, out: Path, name: str) -> list[Path]:
    """Write `name`.png and `name`.pdf into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    fig.savefig(png, dpi=200)
    fig.savefig(pdf, metadata={"CreationDate": None})
    return [png, pdf]


def write_figures(study: Study, out: Path) -> tuple[list[Path], list[str]]:
    """Every figure of every task: the paths written, and a note for each figure left out (and why)."""
    from reports.fig4 import write_fig4

    styles = method_styles(study)
    gold = [
        t
        for t in study.tasks()
        if any(score(r, "gold") is not None for c in study.cells if c.task == t for r in c.samples)
    ]
    written, notes = (save(fig3(study, gold, styles), out, "fig3") if gold else []), []
    for task in study.tasks():
        if task in gold:
            written += save(fig3(study, [task], styles), out, f"fig3-{task}")
            written += save(compute_figure(study, task, styles), out, f"compute-{task}")
        else:  # alpacaeval: judged against references instead (Figure 4)
            notes.append(f"no fig3-{task} or compute-{task}: no sample of task {task} has a gold score")
        proxy = proxy_figure(study, task, styles)
        if proxy is None:
            notes.append(f"no proxy-gold-{task} figure: no sample of task {task} has a guide score")
        else:
            written += save(proxy, out, f"proxy-gold-{task}")
    fig4_written, fig4_notes = write_fig4(study, out, save)
    return written + fig4_written, notes + fig4_notes
