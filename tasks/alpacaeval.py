"""Instruction following (the paper's Fig. 4): AlpacaEval 2.0's 805 instructions, each judged against a reference.

Examples are the eval set's instructions in canonical order, which the length-controlled win rate relies on (its
model looks each instruction's difficulty up by position). Each carries the reference output it is compared with
(gpt4_1106_preview's, in AlpacaEval 2.0). The data comes from the hub (`alpaca_eval_gpt4_baseline.json` of the
dataset tatsu-lab/alpaca_eval) or from a local file in that format: a JSON list of {instruction, output,
generator, dataset}, the whole set or its first rows. There is no per-sample gold reward: judges compare each
response with the reference, and win rates come from the alpaca_eval package (harness.judging).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.configs import option
from harness.errors import UsageError, require
from tasks.base import Example, SampleOptions, TaskConfig, is_local

FIELDS = ("instruction", "output", "generator", "dataset")


@dataclass
class AlpacaEvalConfig(TaskConfig):
    data: str = option("tatsu-lab/alpaca_eval", "hub dataset repo, or a local .json list in alpaca_eval's format")
    data_file: str = option("alpaca_eval_gpt4_baseline.json", "the file of the hub dataset repo to read")
    gold: str = option("", "unused: responses are judged against the reference (see `judges`)")
    judges: list[str] = option(
        [], "judges (names from the study's `judges`) that compare each response with the reference", identity=False
    )
    df_gamed: str = option(
        "",
        "alpaca_eval's df_gamed.csv for the length-controlled win rate; empty: from the hub. A local copy that is "
        "not the hub's own makes every LC number approximate",
        identity=False,
    )
    instruction_difficulty: str = option(
        "", "alpaca_eval's instruction_difficulty.csv; empty: from the hub (as df_gamed)", identity=False
    )
    sample: SampleOptions = option(
        help="sampling settings (the paper's: temperature 0.7, top-p 1, top-k 50 as transformers' default)",
        default_factory=lambda: SampleOptions(max_new_tokens=2048, temperature=0.7, top_k=50),
    )


class AlpacaEval:
    name = "alpacaeval"
    Config = AlpacaEvalConfig

    def __init__(self, config: AlpacaEvalConfig):
        self.config = config

    def examples(self, limit: int | None = None) -> list[Example]:
        """The first `limit` instructions in canonical order; an example's id is its position in the eval set."""
        rows = read_eval_set(self.config.data, self.config.data_file)
        return [
            Example(
                str(i),
                r["instruction"],
                reference=r["output"],
                meta={"dataset": r["dataset"], "index": i, "generator": r["generator"]},
            )
            for i, r in enumerate(rows[:limit])
        ]

    def gold_scorer(self, device: str | None) -> None:
        """No per-sample gold reward: the task's judges compare responses with the references after decoding."""
        return None

    def reference_scorers(self) -> list:
        return []

    def model_outputs(self, examples: list[Example], responses: dict[str, str], generator: str) -> list[dict]:
        """alpaca_eval's model_outputs.json rows (instruction, output, generator, dataset), in canonical order."""
        return [
            {"instruction": e.prompt, "output": responses[e.id], "generator": generator, "dataset": e.meta["dataset"]}
            for e in examples
        ]


def read_eval_set(source: str, filename: str) -> list[dict]:
    """The eval set's rows, from a local JSON file or the named file of a hub dataset repo, fields checked."""
    if is_local(source):
        path = Path(source).expanduser()
        require(path.is_file(), f"data file {source!r} does not exist; fix the task's `data` path")
    else:
        from huggingface_hub import hf_hub_download

        from harness import hub

        hub.offline()  # an unreachable hub: the local cache only, without 25 s of retries
        try:
            path = Path(hf_hub_download(repo_id=source, filename=filename, repo_type="dataset"))
        except Exception as err:  # the hub client raises many types for an unreachable repo or a missing file
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(
                f"cannot fetch {filename} from hub dataset {source!r} ({first}); give a local file as `data`"
            ) from err
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UsageError(f"data file {str(path)!r} is not readable JSON ({err})") from None
    require(
        isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows),
        f"data file {str(path)!r} must be a non-empty JSON list of objects, as alpaca_eval_gpt4_baseline.json",
    )
    for i, row in enumerate(rows):
        missing = [f for f in FIELDS if f not in row]
        require(not missing, f"row {i} of {str(path)!r} lacks the field(s) {', '.join(missing)}; is it the right file?")
        require(isinstance(row["instruction"], str), f"row {i} of {str(path)!r} has an instruction that is not text")
    return rows
