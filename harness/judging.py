"""Judging a finished cell: its responses against the references, one judge at a time, and the win rates.

Each judge writes into the cell, next to model_outputs.json:

    judge-<name>/
        cache.jsonl       every verdict obtained, one JSON line each, keyed by the judge's identity and the pair
        annotations.json  alpaca_eval's annotations format, canonical order; a failed verdict has preference null
                          and `failed` saying why
        winrate.json      win_rate, standard_error, length_controlled_winrate, lc_standard_error (percent, from
                          alpaca_eval's own code), approximate, n, n_failed, judge (its identity: no secrets, with
                          comparable_to_leaderboard), lc_files, cell
        judge.log         what alpaca_eval and the HTTP client logged (never the key)

Verdicts are appended to the cache chunk by chunk, so a judge that dies keeps every verdict it gave; a re-run asks
only for the rest. A failed verdict is never cached: the next run asks again. Cache lines of another judge identity
(another model, server or reward model under the same name) are never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from harness.alpaca import LCFiles, win_rates
from harness.errors import UsageError, require
from harness.judges import Judge, JudgeUnavailable, log_to
from harness.store import MODEL_OUTPUTS, read_json, write_json

ANNOTATIONS, WINRATE, CACHE, LOG = "annotations.json", "winrate.json", "cache.jsonl", "judge.log"
NOT_COMPARABLE = "not comparable with the leaderboard"


def judge_dir(cell: Path, name: str) -> Path:
    return Path(cell) / f"judge-{name}"


def pair_key(identity: dict, row: dict) -> str:
    """A verdict's cache key: the judge's identity and the exact pair it compared."""
    blob = json.dumps([identity, row["instruction"], row["output_1"], row["output_2"]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class AnnotationCache:
    """A judge directory's verdicts (append-only JSON lines, fsynced per chunk), for one judge identity."""

    def __init__(self, path: Path, identity: dict):
        self.path, self.identity = Path(path), identity
        self.found: dict[str, dict] = {}
        if self.path.exists():
            for line in self.path.read_bytes().split(b"\n"):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a torn last line, from a process killed mid-write
                    continue
                if isinstance(entry, dict) and entry.get("judge") == identity:
                    self.found[entry["key"]] = entry["annotation"]

    def get(self, row: dict) -> dict | None:
        return self.found.get(pair_key(self.identity, row))

    def add(self, annotations: Sequence[dict]) -> None:
        """Keep verdicts (never a failed one) on disk before returning."""
        entries = [
            {"judge": self.identity, "key": pair_key(self.identity, a), "annotation": a}
            for a in annotations
            if a.get("preference") is not None
        ]
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            if f.tell() and not self.path.read_bytes().endswith(b"\n"):
                f.write(b"\n")  # after a torn line, start a fresh one
            f.write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode())
            f.flush()
            os.fsync(f.fileno())
        self.found.update((e["key"], e["annotation"]) for e in entries)


def pairs(cell: Path, references: Sequence[dict]) -> list[dict]:
    """The rows to judge: the cell's model_outputs.json against the references (same instructions, same order)."""
    path = Path(cell) / MODEL_OUTPUTS
    require(path.is_file(), f"cell {cell} has no {MODEL_OUTPUTS}: it is not finished; run the study to finish it")
    outputs = read_json(path)
    require(
        len(outputs) <= len(references)
        and all(o["instruction"] == r["instruction"] for o, r in zip(outputs, references, strict=False)),
        f"{path} does not follow the task's eval set (instructions differ or are more); was the data changed?",
    )
    return [
        {
            "dataset": o.get("dataset"),
            "instruction": o["instruction"],
            "output_1": r["output"],
            "generator_1": r["generator"],
            "output_2": o["output"],
            "generator_2": o["generator"],
        }
        for o, r in zip(outputs, references, strict=False)
    ]


def judge_cell(cell: Path, judge: Judge, references: Sequence[dict], files: LCFiles, progress: bool = True) -> dict:
    """Annotate a cell with `judge` (what is cached is not asked again), then write its annotations and win rates;
    returns winrate.json's content. A judge that stops answering raises a one-line UsageError, verdicts kept."""
    rows = pairs(cell, references)
    where = judge_dir(cell, judge.name)
    identity = judge.identity
    cache = AnnotationCache(where / CACHE, identity)
    todo = [r for r in rows if cache.get(r) is None]
    failed: dict[str, dict] = {}
    for start in range(0, len(todo), judge.chunk_size):
        chunk = todo[start : start + judge.chunk_size]
        if progress:
            print(f"judge {judge.name}: {cell} {len(rows) - len(todo) + start}/{len(rows)}", file=sys.stderr)
        try:
            annotated = judge.annotate(chunk, where / LOG)
        except JudgeUnavailable as err:
            kept = sum(cache.get(r) is not None for r in rows)
            raise UsageError(
                f"judge {judge.name}: {err}; {kept} of {len(rows)} verdicts for {cell} are kept in "
                f"{where / CACHE}; run again to finish"
            ) from None
        cache.add(annotated)
        for a in annotated:
            if a.get("preference") is None:
                failed[pair_key(identity, a)] = {**a, "failed": "the judge gave no verdict (see judge.log)"}
    annotations = [cache.get(r) or failed[pair_key(identity, r)] for r in rows]
    write_json(where / ANNOTATIONS, annotations)
    n_failed = sum(a.get("preference") is None for a in annotations)
    result = {
        "cell": str(cell),
        "judge": identity,
        "n": len(annotations),
        "n_failed": n_failed,
        "win_rate": None,
        "standard_error": None,
        "length_controlled_winrate": None,
        "lc_standard_error": None,
        "approximate": False,
    }
    if len(annotations) - n_failed >= 2:  # alpaca_eval's statistics need two verdicts
        with log_to(where / LOG):  # the package's warnings about its fit go with the rest of its log
            result |= win_rates(annotations, files)
    write_json(where / WINRATE, result)
    return result


def label(identity: dict) -> str:
    """How a judge is named beside its numbers: its name and model, and whether the board's numbers compare."""
    text = f"{identity.get('name')} ({identity.get('model')})"
    return text if identity.get("comparable_to_leaderboard") else f"{text}, {NOT_COMPARABLE}"
