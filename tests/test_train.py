"""The miniature's gold sentiment model: a logistic regression on token frequencies, written into a GPT-2 classifier
that the harness loads like any gold model and that computes the regression's logit."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import torch

from harness.toy import synthetic_corpus, train_tokenizer
from training.reward import averaging_classifier, fit_sentiment, review_opening, token_frequencies

ROOT = Path(__file__).resolve().parents[1]


def read(name: str) -> list[dict]:
    with gzip.open(ROOT / "data" / "imdb" / f"{name}.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def test_the_classifier_computes_the_regression_and_learns_sentiment():
    train, held = read("train_10k")[:3000], read("test_500")[:200]
    tokenizer = train_tokenizer([r["text"] for r in train[:500]] + synthetic_corpus(200), 1000)
    tokenizer.pad_token = tokenizer.eos_token
    (weights, bias), _ = fit_sentiment(tokenizer, train, steps=150, lr=0.05, l2=1e-4, seed=0)
    model = averaging_classifier(tokenizer, weights, bias)
    texts = [review_opening(r["text"], random.Random(i)) for i, r in enumerate(held)]
    expected = token_frequencies(tokenizer, texts, scale=1.0) @ weights + bias  # the regression's logit
    inputs = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**inputs).logits
    torch.testing.assert_close(logits[:, 1] - logits[:, 0], expected, atol=0.02 * float(expected.abs().max()), rtol=0)
    labels = torch.tensor([r["label"] for r in held])
    assert ((expected > 0).long() == labels).float().mean() > 0.6  # held-out: it learned sentiment, not noise
