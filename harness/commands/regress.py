"""Check score metrics in summary.json files against a stored baseline and exit 1 if any regressed (for CI).

A metric regresses when its mean falls below the baseline mean minus what its rule allows: the baseline entry's
(an absolute tolerance, or a multiple of the baseline's 95% CI half-width), else --tolerance or --ci-factor, else
the baseline's CI itself. --two-sided fails a rise by more than the same amount too (for a baseline that pins a
recipe's scores). A cell or metric the baseline has and the summaries lack also fails. --update rewrites the
baseline from the summaries, keeping stored rules."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from harness.errors import require

HELP = "compare summary.json metrics with a baseline; exit 1 on a regression"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("summary", metavar="SUMMARY", type=Path, help="a summary.json, or a directory of finished cells")
    p.add_argument("--baseline", required=True, type=Path, metavar="FILE", help="baseline JSON file")
    p.add_argument("--update", action="store_true", help="rewrite the baseline from SUMMARY instead of checking")
    p.add_argument(
        "--tolerance",
        type=float,
        metavar="X",
        help="absolute drop allowed for entries without their own rule (default: none, the baseline's CI)",
    )
    p.add_argument(
        "--ci-factor",
        type=float,
        metavar="K",
        help="drop allowed for entries without their own rule, as K x the baseline's 95%% CI half-width (default: 1)",
    )
    p.add_argument(
        "--two-sided",
        action="store_true",
        help="also fail a mean that rose by more than its rule allows (the scores changed, not only dropped)",
    )


def run(args: argparse.Namespace) -> int:
    from harness.preflight import check_output_dir
    from harness.store import write_json
    from reports.regress import check, load_summaries, read_baseline, unchecked, updated_baseline

    tol, factor = args.tolerance, args.ci_factor
    require(tol is None or (math.isfinite(tol) and tol >= 0), f"--tolerance must be a number >= 0, got {tol}")
    require(
        factor is None or (math.isfinite(factor) and factor >= 0), f"--ci-factor must be a number >= 0, got {factor}"
    )
    require(tol is None or factor is None, "give --tolerance or --ci-factor, not both")
    current = load_summaries(args.summary)
    if args.update:
        require(not args.baseline.is_dir(), f"--baseline {args.baseline} is a directory; give the path of a file")
        check_output_dir(args.baseline.parent, "--baseline's directory", "give a --baseline path you can write")
        old = read_baseline(args.baseline) if args.baseline.exists() else {}
        baseline = updated_baseline(current, old, tol, factor)
        write_json(args.baseline, baseline)
        metrics = sum(len(m) for m in baseline["cells"].values())
        print(f"wrote baseline {args.baseline}: {len(baseline['cells'])} cell(s), {metrics} metric(s)")
        return 0
    baseline = read_baseline(args.baseline)
    regressions = check(current, baseline, tol, factor, args.two_sided)
    for regression in regressions:
        print(regression)
    new = unchecked(current, baseline)
    if new:
        print(f"note: {len(new)} metric(s) not in the baseline, not checked (add them with --update): {', '.join(new)}")
    checked = sum(len(m) for m in baseline.values())
    if regressions:
        print(f"FAILED: {len(regressions)} regression(s) against {args.baseline} ({checked} metric(s) in baseline)")
        print(
            "if the change is intended (scores follow the models, data and code a run used), refresh the baseline from"
            f" a fresh run: w2s regress SUMMARY --baseline {args.baseline} --update"
        )
        return 1
    print(f"OK: no regression in {checked} metric(s) of {len(baseline)} cell(s) against {args.baseline}")
    return 0
