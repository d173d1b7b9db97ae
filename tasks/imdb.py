"""Controlled sentiment generation (the paper's Fig. 3, left): continue a movie review so that it reads positive.

Prompts are truncated IMDB reviews: ZHZisZZ/imdb_preference's prompts (test split, as in the paper), or prefixes
cut from raw reviews (stanfordnlp/imdb rows, or a local file of them) with a seeded number of words. The strong
model sees "Here is a movie review from imdb: {prompt}", the guide the bare prompt. The gold reward is a sentiment
classifier's logit(positive) - logit(negative) on prompt + response (lvwerra/distilbert-imdb in the paper).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.configs import option
from harness.errors import require
from harness.scorers import RewardModel
from harness.types import ModelSpec
from tasks.base import Example, TaskConfig, first_present, load_records


@dataclass
class IMDBConfig(TaskConfig):
    data: str = option("ZHZisZZ/imdb_preference", "hub dataset id, or a local .jsonl(.gz)/.json of prompts or reviews")
    gold: str = option("lvwerra/distilbert-imdb", "sentiment classifier: hub id or local directory")
    template: str = option("Here is a movie review from imdb: {prompt}", "strong model's prompt template")
    prefix_words: tuple[int, int] = option((2, 8), "raw reviews: a prompt is the first n words, n uniform in [lo, hi]")
    data_seed: int = option(0, "raw reviews: seeds which reviews are taken and how many words each keeps")
    positive_label: str = option("POSITIVE", "classifier label counted as positive")
    negative_label: str = option("NEGATIVE", "classifier label counted as negative")


class IMDB:
    """Rows with a `prompt` field are used as they are, in file order; rows with a review `text` are sampled."""

    name = "imdb"
    Config = IMDBConfig

    def __init__(self, config: IMDBConfig):
        lo, hi = config.prefix_words
        require(1 <= lo <= hi, f"tasks.imdb.prefix_words must be [lo, hi] with 1 <= lo <= hi, got {[lo, hi]}")
        self.config = config

    def examples(self, limit: int | None = None) -> list[Example]:
        c = self.config
        records = load_records(c.data, c.split)
        if records and "prompt" in records[0]:
            return [
                Example(str(r.get("id", i)), first_present(r, ("prompt",), c.data))
                for i, r in enumerate(records[:limit])
            ]
        order = list(range(len(records)))
        random.Random(c.data_seed).shuffle(order)  # files of reviews are sorted by label; take a mix
        examples = []
        for i in order[:limit]:
            record = records[i]
            review_id = str(record.get("id", i))
            words = first_present(record, ("text", "review"), c.data).replace("<br />", " ").split()
            n = random.Random(f"{c.data_seed}/{review_id}").randint(*c.prefix_words)
            examples.append(Example(review_id, " ".join(words[:n]), meta={"label": record.get("label")}))
        return examples

    def gold_scorer(self, device: str | None) -> RewardModel:
        """logit(positive) - logit(negative) of the classifier on prompt + response, as the paper evaluates."""
        c = self.config
        spec = ModelSpec(c.gold, dtype=c.gold_dtype, device=device)
        return RewardModel(
            "gold", spec, positive=c.positive_label, negative=c.negative_label, batch_size=c.gold_batch_size
        )

    def reference_scorers(self) -> list:
        return []
