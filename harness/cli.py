"""The `w2s` command. Each subcommand lives in its own module, which imports torch only when it runs."""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import user_facing

# name -> module defining HELP, add_arguments(parser) and run(args) -> int
COMMANDS = {
    "generate": "harness.commands.generate",
    "run": "harness.commands.run",
    "report": "harness.commands.report",
    "regress": "harness.commands.regress",
    "reproduce": "harness.commands.reproduce",
    "toy-models": "harness.commands.toy_models",
    "train": "harness.commands.train",
    "winrate": "harness.commands.winrate",
    "leaderboard": "harness.commands.leaderboard",
    "serve": "harness.commands.serve",
    "tune": "harness.commands.tune",
    "prefs": "harness.commands.prefs",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (exit code 2) rather than a usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="w2s", description="Weak-to-strong search: decode, run studies, report, guard scores.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for name, path in COMMANDS.items():
        module = importlib.import_module(path)
        command = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come after options (`w2s run c.yaml --dry-run limit=2`); anything else is an error
    if extra and hasattr(args, "overrides") and not any(e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args) or 0
    except Exception as err:  # the one place user-facing errors become one line; anything else is re-raised
        message = user_facing(err)
        if message is None:
            raise
        print(f"w2s: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("w2s: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
