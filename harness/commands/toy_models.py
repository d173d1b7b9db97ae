"""Train the offline miniature's small models from the project's data/ (a few minutes on a CPU, no downloads).

They are what configs/offline-small.yaml runs: GPT-2-shaped strong models and guides, and small gold classifiers.
They exercise the whole harness offline; they do not reproduce the paper's numbers.
"""

from __future__ import annotations

import argparse

HELP = "train the small local models the offline config uses"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", nargs="?", default="toy", help="where to save the models (default: toy)")
    p.add_argument("--data", default="data", help="the project's data directory (default: data)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every training step count (default: 1.0)")


def run(args: argparse.Namespace) -> int:
    import math
    from pathlib import Path

    from harness.errors import require
    from harness.preflight import check_output_dir

    require(math.isfinite(args.scale) and args.scale > 0, f"--scale must be a number > 0, got {args.scale}")
    check_output_dir(args.out, "output directory", "give another OUT")
    from harness.commands import quiet_transformers
    from harness.toy_zoo import build_zoo

    quiet_transformers()
    saved = build_zoo(Path(args.out), Path(args.data), args.scale)
    print(f"{len(saved)} models under {args.out}; next: w2s run configs/offline-small.yaml")
    return 0
