"""Place judged runs in the AlpacaEval 2.0 leaderboard shipped with alpaca-eval: a ranked markdown table of the whole
board with the runs in it (leaderboard.md), the same as CSV, and a figure of the runs among their neighbours
(leaderboard.png). Each number is named with its judge: only alpaca_eval's weighted gpt-4-turbo annotator with
gpt-4-1106-preview at OpenAI compares with the board; runs judged otherwise (a self-hosted judge, a local reward model)
are placed by their number and marked not comparable. Reads winrate.json files only; loads no model."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "place judged runs in the AlpacaEval 2.0 leaderboard (table and figure)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", metavar="RUN", type=Path, nargs="+", help="a study's output directory, or a cell in it")
    p.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: the first RUN/leaderboard)")
    p.add_argument("--board", type=Path, metavar="CSV", help="another leaderboard CSV (default: alpaca-eval's)")
    p.add_argument("--around", type=int, default=5, metavar="N", help="board rows drawn on each side of a run")


def run(args: argparse.Namespace) -> int:
    import csv

    from harness.errors import require
    from harness.preflight import make_output_dir
    from reports.leaderboard import board_path, figure, place, read_board, read_runs, table

    require(args.around >= 0, f"--around must be >= 0, got {args.around}")
    board = read_board(args.board or board_path())
    runs = read_runs(args.runs)
    out = make_output_dir(args.out or args.runs[0] / "leaderboard", "leaderboard directory", "give a writable --out")
    ranked = place(board, runs)
    (out / "leaderboard.md").write_text(table(ranked), encoding="utf-8")
    with open(out / "leaderboard.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["rank", "model", "lc_winrate", "lc_standard_error", "win_rate", "standard_error", "judge", "note"]
        )
        for rank, e in enumerate(ranked, 1):
            writer.writerow([rank, e.name, e.lc, e.lc_se, e.win_rate, e.se, e.judge, e.note])
    drawn = figure(ranked, out / "leaderboard.png", args.around)
    for rank, e in enumerate(ranked, 1):
        if e.run:
            lc = "no LC" if e.lc is None else f"LC {e.lc:.1f}" + (f" ± {e.lc_se:.1f}" if e.lc_se is not None else "")
            note = f"; {e.note.removeprefix('this run').lstrip('; ')}" if e.note != "this run" else ""
            print(f"rank {rank}/{len(ranked)}: {e.name}  {lc}  judge {e.judge}{note}")
    for path in (out / "leaderboard.md", out / "leaderboard.csv", drawn):
        print(f"wrote {path}")
    return 0
