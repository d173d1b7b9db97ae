"""Raw and length-controlled (LC) win rates, with standard errors, from an alpaca_eval annotations file: a run's,
or a published leaderboard entry's. Both come from the alpaca_eval package's own functions.

The LC model needs two files from the hub dataset tatsu-lab/alpaca_eval (df_gamed.csv, instruction_difficulty.csv).
Where the hub is unreachable, give local copies with --df-gamed and --instruction-difficulty; a number computed with
copies that are not the hub's own is labelled approximate. Rows must be in the eval set's canonical order, as
alpaca_eval writes them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "raw and length-controlled win rates from an alpaca_eval annotations file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("annotations", metavar="ANNOTATIONS", type=Path, help="annotations.json (or a directory holding it)")
    p.add_argument("--df-gamed", metavar="PATH", help="local df_gamed.csv (default: the hub's)")
    p.add_argument("--instruction-difficulty", metavar="PATH", help="local instruction_difficulty.csv (default: hub)")
    p.add_argument("--json", action="store_true", help="end with one JSON line holding every number")


def run(args: argparse.Namespace) -> int:
    from harness.alpaca import LCFiles, read_annotations, win_rates

    rows = read_annotations(args.annotations)
    result = win_rates(rows, LCFiles(args.df_gamed, args.instruction_difficulty))
    first = rows[0]
    print(
        f"{args.annotations}: {first['generator_2']} against {first['generator_1']}, {len(rows)} annotations "
        f"({result['n_missing']} without a verdict), judge {first.get('annotator', 'not named')}"
    )
    print(f"win rate:    {fmt(result['win_rate'], result['standard_error'])}")
    label = " (approximate: LC model files are local copies, not the hub's)" if result["approximate"] else ""
    print(f"LC win rate: {fmt(result['length_controlled_winrate'], result['lc_standard_error'])}{label}")
    if args.json:
        print(json.dumps({"annotations": str(args.annotations), "judge": first.get("annotator"), **result}))
    return 0


def fmt(value: float | None, error: float | None) -> str:
    """A percentage with its standard error, as the leaderboard prints them."""
    if value is None:
        return "—"
    return f"{value:.2f}" + (f" ± {error:.2f}" if error is not None else "")
