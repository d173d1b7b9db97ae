"""Scorers give one number per (prompt, response): a gold reward model, the guide's implicit reward, ROUGE.

A scorer knows nothing of corpus statistics (harness.stats aggregates). Its `identity` names everything its numbers
depend on, so `ScoreCache` can keep them by (identity, prompt, response) and re-scoring a finished run is free.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol

from harness.errors import require
from harness.identity import fingerprint
from harness.types import ModelSpec


@dataclass(frozen=True)
class Item:
    """What a scorer sees of one sample."""

    prompt: str  # the raw task prompt, no template
    response: str
    finished: bool = True  # ended by EOS or a stop string (the guide then also scores its EOS)
    reference: str | None = None  # a human reference, for reference metrics
    stop: str = ""  # the stop string that ended the response (cut from it); the guide reads through it


class Scorer(Protocol):
    key: str  # the name of its number among a sample's scores

    @property
    def identity(self) -> str:
        """Everything the scores depend on (model, revision, settings): the cache key."""
        ...

    def __call__(self, items: Sequence[Item]) -> list[float]: ...


class RewardModel:
    """A Hugging Face sequence classifier as a reward: logit(positive) - logit(negative), or its scalar head.

    Input text is `template` filled with the raw prompt and the response, or the (prompt, response) text pair
    for reward models trained on pairs. Loaded on first use, so building a study loads nothing.
    """

    def __init__(
        self,
        key: str,
        spec: ModelSpec,
        *,
        template: str = "{prompt}{response}",
        text_pair: bool = False,
        positive: str = "POSITIVE",
        negative: str = "NEGATIVE",
        batch_size: int = 16,
        special_tokens: bool = True,
    ):
        self.key, self.spec, self.template, self.text_pair = key, spec, template, text_pair
        self.positive, self.negative, self.batch_size = positive, negative, batch_size
        self.special_tokens = special_tokens  # False: the text has them already (a chat template wrote them)
        self._model = None

    @cached_property
    def identity(self) -> str:
        """The model (path, revision, content), where and in what precision it runs, and how its input is built."""
        from harness.backends.hf import default_device

        s, device = self.spec, torch_device_type(self.spec.device or default_device())
        settings = (s.path, s.revision, fingerprint(s.path), s.dtype, device, self.template, self.text_pair)
        extra = () if self.special_tokens else ("no-special-tokens",)
        return "reward-model|" + "|".join(map(str, (*settings, self.positive, self.negative, *extra)))

    def check(self) -> None:
        """What can be checked without the weights: the model's device and files, and that it has the labels asked
        for (a run calls this before it loads any model)."""
        from harness.preflight import inspect_model

        config = inspect_model(self.spec).config
        kinds = config.architectures or []
        require(
            not kinds or not all(k.endswith(("ForCausalLM", "LMHeadModel")) for k in kinds),
            f"gold model {self.spec.path} is a language model ({', '.join(kinds)}), not a classifier: its scores would "
            "come from an untrained head; give a reward model or a sequence classifier",
        )
        self._labels(config)

    def _labels(self, config) -> tuple[int, int] | None:
        """Indices of the positive and negative label, or None for a one-output (scalar) reward model."""
        if config.num_labels == 1:
            return None
        labels = {str(v).lower(): int(k) for k, v in config.id2label.items()}
        names = (self.positive.lower(), self.negative.lower())
        require(
            all(n in labels for n in names),
            f"gold model {self.spec.path} has labels {sorted(labels)}; "
            "set positive_label and negative_label to two of them",
        )
        return labels[names[0]], labels[names[1]]

    def _load(self):
        import torch
        from transformers import AutoModelForSequenceClassification

        from harness.backends.hf import from_pretrained

        model, tokenizer = from_pretrained(self.spec, AutoModelForSequenceClassification)
        if tokenizer.pad_token is None:  # GPT-2-style classifiers: pad with EOS, as the paper's evaluation does
            tokenizer.pad_token = tokenizer.eos_token
            model.config.pad_token_id = tokenizer.pad_token_id
        tokenizer.truncation_side = "left"  # an over-long input loses the start of its prompt, never the response
        labels = self._labels(model.config)
        pick = None if labels is None else torch.tensor(labels)
        limit = getattr(model.config, "max_position_embeddings", None) or getattr(model.config, "n_positions", 512)
        self._model = (model, tokenizer, pick, min(tokenizer.model_max_length, limit))

    def __call__(self, items: Sequence[Item]) -> list[float]:
        import torch

        if self._model is None:
            self._load()
        model, tokenizer, pick, max_length = self._model
        scores: list[float] = []
        for i in range(0, len(items), self.batch_size):
            batch = items[i : i + self.batch_size]
            if self.text_pair:
                texts = ([it.prompt for it in batch], [it.response for it in batch])
            else:
                texts = (
                    [self.template.replace("{prompt}", it.prompt).replace("{response}", it.response) for it in batch],
                )
            truncation = "only_first" if self.text_pair else True  # cut the prompt, keep the response whole
            inputs = tokenizer(
                *texts,
                padding=True,
                truncation=truncation,
                max_length=max_length,
                add_special_tokens=self.special_tokens,
                return_tensors="pt",
            )
            with torch.inference_mode():
                logits = model(**inputs.to(model.device)).logits.float()
            values = logits[:, 0] if pick is None else logits[:, pick[0]] - logits[:, pick[1]]
            scores += values.tolist()
        return scores


class GuideReward:
    """The guide's implicit reward of a response text, so every method's output gets the proxy score too."""

    key = "guide"

    def __init__(self, guide, batch_size: int = 16):  # guide: harness.guide.Guide
        self.guide, self.batch_size = guide, batch_size

    @cached_property
    def identity(self) -> str:
        g = self.guide
        models = [f"{lm.name}:{fingerprint(lm.name)}:{lm.model.dtype}:{lm.device.type}" for lm in (g.tuned, g.untuned)]
        return f"guide|{'|'.join(models)}|{g.beta}|{g.template}|eos_at_budget={g.eos_at_budget}"

    def __call__(self, items: Sequence[Item]) -> list[float]:
        scores: list[float] = []
        for i in range(0, len(items), self.batch_size):
            batch = items[i : i + self.batch_size]
            scores += self.guide.score_text(
                [it.prompt for it in batch],
                [it.response + it.stop for it in batch],
                [self.guide.scores_eos(it.finished, budget_spent=True) for it in batch],
            )
        return scores


ROUGE_KIND = r"rouge([1-9][0-9]*|L|Lsum)"  # the variants rouge_score computes


class Rouge:
    """ROUGE F-measure against the human reference (rouge_score, the package evaluate's "rouge" metric wraps)."""

    def __init__(self, kind: str = "rougeL", stemmer: bool = True):
        from rouge_score import rouge_scorer

        self.key, self.kind = kind, kind
        self.scorer = rouge_scorer.RougeScorer([kind], use_stemmer=stemmer)
        self._identity = f"rouge|{kind}|stemmer={stemmer}"

    @property
    def identity(self) -> str:
        return self._identity

    def __call__(self, items: Sequence[Item]) -> list[float]:
        require(
            all(it.reference is not None for it in items), f"{self.kind} needs a reference summary for every example"
        )
        return [self.scorer.score(it.reference, it.response)[self.kind].fmeasure for it in items]


def torch_device_type(device: str) -> str:
    """ "cuda:1" -> "cuda": numbers may differ between kinds of device, not between two devices of one kind."""
    return device.split(":")[0]


class ScoreCache:
    """Scores kept in SQLite by (scorer identity, item); safe to share between runs, survives being killed."""

    def __init__(self, path: Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value REAL NOT NULL)")

    @staticmethod
    def _key(scorer: Scorer, item: Item) -> str:
        blob = json.dumps([scorer.identity, item.prompt, item.response, item.stop, item.finished, item.reference])
        return hashlib.sha256(blob.encode()).hexdigest()

    def score(self, scorer: Scorer, items: Sequence[Item]) -> list[float]:
        """Cached scores where there are some; the scorer runs on the rest only, and they are stored."""
        keys = [self._key(scorer, it) for it in items]
        found = dict(self._lookup(keys))
        todo = [i for i, k in enumerate(keys) if k not in found]
        if todo:
            fresh = scorer([items[i] for i in todo])
            with self.db:
                self.db.executemany(
                    "INSERT OR REPLACE INTO scores VALUES (?, ?)",
                    [(keys[i], v) for i, v in zip(todo, fresh, strict=True)],
                )
            found.update((keys[i], v) for i, v in zip(todo, fresh, strict=True))
        return [found[k] for k in keys]

    def _lookup(self, keys: list[str]) -> list[tuple[str, float]]:
        rows = []
        for i in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows += self.db.execute(f"SELECT key, value FROM scores WHERE key IN ({marks})", chunk).fetchall()
        return rows

    def close(self) -> None:
        self.db.close()
