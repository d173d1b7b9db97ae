"""The on-disk form of a run: one directory per cell holding append-only sample records, a manifest and a summary.

    <out>/<task>/<strong>/<method-slug>/seed-<seed>/
        samples.jsonl   one JSON object per finished sample, appended and fsynced batch by batch
        manifest.json   what produced the cell: resolved config, versions, git commit, device
        summary.json    per-metric n, mean, std and 95% bootstrap CI, written when the cell completes
        model_outputs.json  alpaca_eval's format (tasks judged against references), written when the cell completes
        .lock           held (flock) by the one process writing the cell

A process killed at any moment leaves at most a torn last line, which readers ignore and writers cut off.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import UsageError

SAMPLES, MANIFEST, SUMMARY, LOCK = "samples.jsonl", "manifest.json", "summary.json", ".lock"
MODEL_OUTPUTS = "model_outputs.json"


def _complete_lines(data: bytes) -> tuple[list[dict], int]:
    """Records from every complete, valid line, and the byte length they span (what a writer keeps)."""
    records, kept = [], 0
    while (end := data.find(b"\n", kept)) >= 0:  # a line without its newline is torn: the writer died mid-line
        try:
            records.append(json.loads(data[kept:end]))
        except json.JSONDecodeError:
            break
        kept = end + 1
    return records, kept


def read_samples(cell: Path) -> list[dict]:
    """Every finished sample of a cell; a torn last line is ignored."""
    path = Path(cell) / SAMPLES
    return _complete_lines(path.read_bytes())[0] if path.exists() else []


class SampleLog:
    """Appends sample records to a cell, each batch flushed and fsynced before the call returns."""

    def __init__(self, cell: Path):
        self.path = Path(cell) / SAMPLES
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes() if self.path.exists() else b""
        self.records, kept = _complete_lines(data)
        if kept < len(data):  # cut a torn tail so the next append starts on a fresh line
            with open(self.path, "r+b") as f:
                f.truncate(kept)

    def append(self, records: Iterable[dict]) -> None:
        lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())
        self.records.extend(json.loads(line) for line in lines)


def write_json(path: Path, obj: object) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextmanager
def cell_lock(cell: Path) -> Iterator[None]:
    """Hold the cell's lock for the duration, or refuse at once if another process holds it."""
    cell = Path(cell)
    cell.mkdir(parents=True, exist_ok=True)
    with open(cell / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(f"cell {cell} is being written by {holder}; wait for it to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_cells(root: Path) -> list[Path]:
    """Every cell directory under `root` (those with a manifest), sorted."""
    return sorted(p.parent for p in Path(root).rglob(MANIFEST))
