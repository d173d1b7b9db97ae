"""Training data for `w2s tune`: rows of a local .jsonl/.json(.gz)/.parquet file or a hub dataset, checked against
the columns trl's trainers read before anything loads."""

from __future__ import annotations

from pathlib import Path

from harness.errors import UsageError, require
from tasks.base import load_records

# the dataset formats each trainer accepts (trl 1.x): one of these column sets must be in every row
FORMATS = {
    "sft": (("text",), ("prompt", "completion"), ("messages",)),
    "dpo": (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
}


def load_rows(source: str, split: str) -> list[dict]:
    """Rows of a local file (.jsonl, .json, .gz, .parquet) or of a hub dataset's split."""
    if source.endswith(".parquet"):
        path = Path(source).expanduser()
        require(path.is_file(), f"data file {source!r} does not exist; fix the path")
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowException) as err:
            raise UsageError(f"data file {source!r} is not readable parquet ({err}); write it again") from None
    return load_records(source, split)


def indexed_pairs(rows: list[dict], source: str) -> list[dict]:
    """Rows of ZHZisZZ/imdb_preference's form (`responses`: two texts, `chosen`: the index of the preferred one) as
    prompt/chosen/rejected rows, the form trl reads; other rows are returned as they are."""
    if not rows or "responses" not in rows[0] or isinstance(rows[0].get("chosen"), str):
        return rows
    pairs = []
    for i, row in enumerate(rows):
        responses, index = row.get("responses"), row.get("chosen")
        require(
            isinstance(responses, list) and len(responses) == 2 and all(isinstance(r, str) for r in responses),
            f"row {i} of {source!r} needs `responses`: a list of two texts, got {responses!r:.60}",
        )
        require(
            index in (0, 1) and not isinstance(index, bool),
            f"row {i} of {source!r} needs `chosen`: 0 or 1, the index of the preferred response, got {index!r:.20}",
        )
        pairs.append({**row, "chosen": responses[index], "rejected": responses[1 - index]})
    return pairs


def check_rows(kind: str, rows: list[dict], source: str) -> tuple[str, ...]:
    """The column set every row has (the first of FORMATS[kind] that the first row fits), each value text or, for a
    conversational dataset, a list of messages; a one-line error naming the first bad row otherwise."""
    require(rows, f"data {source!r} has no rows; give a file with at least one")
    formats = FORMATS[kind]
    columns = next((f for f in formats if all(c in rows[0] for c in f)), None)
    accepted = " or ".join("/".join(f) for f in formats)
    if columns is None:
        raise UsageError(
            f"data {source!r} lacks the columns `w2s tune {kind}` reads (it has {', '.join(rows[0]) or 'none'}); "
            f"give rows with {accepted}"
        )
    for i, row in enumerate(rows):
        for column in columns:
            value = row.get(column)
            require(
                isinstance(value, str) or _is_messages(value),
                f"row {i} of {source!r} needs text (or a list of chat messages) in {column!r}, got {value!r:.40}",
            )
    return columns


def _is_messages(value: object) -> bool:
    """A conversational value: a non-empty list of {"role", "content"} objects."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    )


def is_conversational(rows: list[dict], columns: tuple[str, ...]) -> bool:
    """Whether the rows hold chat messages (which need the tokenizer's chat template) rather than plain text."""
    return any(_is_messages(rows[0].get(c)) for c in columns)
