"""Runs placed in the AlpacaEval 2.0 leaderboard: a ranked table and a figure, each number named with its judge.

The board is the CSV shipped inside the alpaca-eval package (weighted_alpaca_eval_gpt4_turbo_leaderboard.csv: LC win
rate and its standard error against gpt4_1106_preview, judged by gpt-4-turbo). A run's numbers are its cells'
judge-<name>/winrate.json (harness.judging). Only a run judged by that same annotator and model at OpenAI, on all 805
instructions, compares with the board; every other run is placed by its number but marked not comparable, and an LC
computed with local copies of the LC model's files is marked approximate. Reads files only: no model is loaded.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from harness.alpaca import EVAL_SET_SIZE
from harness.errors import UsageError, require
from reports.figures import RC

BOARD_FILE = ("leaderboards", "data_AlpacaEval_2", "weighted_alpaca_eval_gpt4_turbo_leaderboard.csv")
BOARD_JUDGE = "weighted_alpaca_eval_gpt4_turbo (gpt-4-1106-preview)"
NOT_COMPARABLE = "not comparable with the leaderboard"
COLUMNS = ("length_controlled_winrate", "lc_standard_error", "win_rate", "standard_error")


@dataclass(frozen=True)
class Entry:
    """One row of the placed board: a published model, or a cell of a run with one judge."""

    name: str
    lc: float | None
    lc_se: float | None
    win_rate: float | None
    se: float | None
    judge: str
    comparable: bool = True
    approximate: bool = False
    run: bool = False
    mode: str = ""  # the board's: verified, community, minimal
    instructions: int | None = None  # a run's: how many instructions its numbers cover

    @property
    def note(self) -> str:
        notes = ["this run"] if self.run else [self.mode] if self.mode else []
        notes += [NOT_COMPARABLE] if not self.comparable else []
        partial = self.instructions is not None and self.instructions != EVAL_SET_SIZE
        notes += [f"{self.instructions} of {EVAL_SET_SIZE} instructions"] if partial else []
        notes += ["approximate LC (local LC-model files)"] if self.approximate else []
        notes += ["no LC: fewer than two verdicts"] if self.run and self.lc is None else []
        return "; ".join(notes)


def board_path() -> Path:
    """The leaderboard CSV inside the installed alpaca-eval package (found without importing it)."""
    spec = importlib.util.find_spec("alpaca_eval")
    require(spec is not None and spec.origin is not None, "the alpaca-eval package is not installed; install it")
    return Path(spec.origin).parent.joinpath(*BOARD_FILE)


def read_board(path: Path) -> list[Entry]:
    """The board's rows: model name, LC and its standard error, raw win rate and its standard error, mode."""
    require(Path(path).is_file(), f"leaderboard file {str(path)!r} does not exist; give an AlpacaEval 2.0 CSV")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"leaderboard file {str(path)!r} is not a readable CSV ({err})") from None
    require(
        rows and all(c in rows[0] for c in COLUMNS),
        f"leaderboard file {str(path)!r} lacks the columns {', '.join(COLUMNS)}; is it alpaca_eval's?",
    )
    name_key = next(iter(rows[0]))  # the unnamed first column holds the model's name
    return [
        Entry(
            r[name_key],
            *(_number(r[c]) for c in COLUMNS),
            judge=BOARD_JUDGE,
            mode=r.get("mode") or "",
        )
        for r in rows
    ]


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        return None
    return None if math.isnan(value) else value


def read_runs(runs: list[Path]) -> list[Entry]:
    """Every judged cell under the given directories (a study's out, a cell, or a judge directory)."""
    entries = []
    for run in runs:
        require(Path(run).is_dir(), f"{str(run)!r} is not a directory; give a study's output directory (or a cell)")
        found = (
            [run / "winrate.json"] if (run / "winrate.json").is_file() else sorted(run.rglob("judge-*/winrate.json"))
        )
        require(
            found,
            f"no judged cell under {str(run)!r} (no judge-*/winrate.json); give the study judges "
            "(`judges:` and tasks.<task>.judges) and run it again",
        )
        for path in found:
            try:
                result = json.loads(path.read_text(encoding="utf-8"))
                judge = result["judge"]
                label = f"{judge['name']} ({judge['model']})"
                instructions = result.get("n")
                # the board's numbers cover the whole eval set: a run on part of it does not compare
                comparable = bool(judge["comparable_to_leaderboard"]) and instructions in (None, EVAL_SET_SIZE)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
                raise UsageError(f"{path} is not a winrate.json written by a judge ({err!r}); judge again") from None
            cell = path.parent.parent
            where = cell.relative_to(run) if cell.is_relative_to(run) and cell != run else Path(cell.name)
            entries.append(
                Entry(
                    f"{Path(run).resolve().name}/{where.as_posix()} [{judge['name']}]".replace("/./", "/"),
                    *(result.get(c) for c in COLUMNS),
                    judge=label,
                    comparable=comparable,
                    approximate=bool(result.get("approximate")),
                    run=True,
                    instructions=instructions,
                )
            )
    return entries


def place(board: list[Entry], runs: list[Entry]) -> list[Entry]:
    """Board and runs in one ranking by LC win rate, highest first (a run tied with a board row after it); rows
    without an LC last."""
    return sorted([*board, *runs], key=lambda e: (e.lc is None, -(e.lc or 0.0), e.run))


def _fmt(value: float | None, error: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" + (f" ± {error:.1f}" if error is not None else "")


def table(ranked: list[Entry]) -> str:
    """The whole placed board as markdown, the runs in bold."""
    lines = [
        "# AlpacaEval 2.0 leaderboard with these runs",
        "",
        f"Board: alpaca-eval's {BOARD_FILE[-1]} (reference gpt4_1106_preview, judge {BOARD_JUDGE}). "
        f"A run's number compares with the board only when its judge is that one and it covers all {EVAL_SET_SIZE} "
        f"instructions; others are {NOT_COMPARABLE}.",
        "",
        "| rank | model | LC win rate | win rate | judge | note |",
        "|---:|---|---:|---:|---|---|",
    ]
    for rank, e in enumerate(ranked, 1):
        name = f"**{e.name}**" if e.run else e.name
        lc, wr = _fmt(e.lc, e.lc_se), _fmt(e.win_rate, e.se)
        lines.append(f"| {rank} | {name} | {lc} | {wr} | {e.judge} | {e.note} |")
    return "\n".join(lines) + "\n"


def neighbourhood(ranked: list[Entry], around: int) -> list[int]:
    """Indices to draw: every run with `around` board rows on each side, and the board's top `around`."""
    keep = set(range(min(around, len(ranked))))
    for i, e in enumerate(ranked):
        if e.run:
            keep.update(range(max(0, i - around), min(len(ranked), i + around + 1)))
    return sorted(i for i in keep if ranked[i].lc is not None)


def figure(ranked: list[Entry], path: Path, around: int = 5) -> Path:
    """LC win rate with its standard error, runs highlighted (filled red: comparable; hollow orange: not) among
    their neighbours on the board; y labels carry the rank."""
    import matplotlib

    shown = neighbourhood(ranked, around)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.0, 0.8 + 0.16 * max(len(shown), 3)), layout="constrained")
        ax = fig.add_subplot()
        for y, i in enumerate(reversed(shown)):
            e = ranked[i]
            if not e.run:
                style = {"color": "0.55", "marker": "o", "markersize": 3}
            elif e.comparable:
                style = {"color": "tab:red", "marker": "D", "markersize": 5}
            else:
                style = {"color": "tab:orange", "marker": "D", "markersize": 5, "markerfacecolor": "white"}
            ax.errorbar(e.lc, y, xerr=e.lc_se or 0.0, linestyle="none", capsize=1.5, elinewidth=0.8, **style)
        labels = []
        for i in reversed(shown):
            e = ranked[i]
            mark = ("" if e.comparable else " †") + (" ≈" if e.approximate else "") if e.run else ""
            labels.append(f"{i + 1}. {e.name}{mark}")
        ax.set_yticks(range(len(shown)), labels)
        for tick, i in zip(ax.get_yticklabels(), reversed(shown), strict=True):
            if ranked[i].run:
                tick.set_fontweight("bold")
        ax.grid(axis="y", visible=False)
        rows = list(reversed(shown))
        for y in range(1, len(rows)):  # a dotted line where board rows are left out
            if rows[y - 1] - rows[y] > 1:
                ax.axhline(y - 0.5, color="0.7", linestyle=":", linewidth=0.6)
        ax.set_xlabel("AlpacaEval 2.0 LC win rate (%) vs gpt4_1106_preview, ± s.e.")
        notes = ["grey: the board (judge weighted_alpaca_eval_gpt4_turbo)"]
        if any(ranked[i].run and not ranked[i].comparable for i in shown):
            notes.append(f"† another judge, or part of the eval set: {NOT_COMPARABLE}")
        if any(ranked[i].approximate for i in shown):
            notes.append("≈ approximate LC (local LC-model files)")
        ax.set_title("\n".join(notes), fontsize=7, loc="left")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=200)
    return path
