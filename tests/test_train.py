"""The miniature's gold reward models: regressions fitted on real labels (IMDB sentiment; TL;DR summary pairs),
written into GPT-2 classifiers that the harness loads like any gold model and that compute the regressions."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import torch
from conftest import w2s

from harness.scorers import Item, RewardModel
from harness.toy import synthetic_corpus, train_tokenizer
from harness.types import ModelSpec
from training.pretrain import TLDR_FORMAT, save_model
from training.reward import (
    averaging_classifier,
    fit_sentiment,
    fit_summary_reward,
    overlap_classifier,
    overlap_counts,
    pair_text,
    review_opening,
    summary_marker,
    summary_pairs,
    token_frequencies,
)

ROOT = Path(__file__).resolve().parents[1]


def read(name: str, task: str = "imdb") -> list[dict]:
    with gzip.open(ROOT / "data" / task / f"{name}.jsonl.gz", "rt") as f:
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


def test_the_summary_reward_computes_its_regression_and_learns_which_summary_fits(tmp_path):
    posts = read("valid_1945_cut100", "tldr")[:1000]
    tokenizer = train_tokenizer([TLDR_FORMAT.format(**p) + " " + p["reference_summary"] for p in posts], 1000)
    tokenizer.pad_token = tokenizer.eos_token
    train, held = summary_pairs(posts[:800], seed=0), summary_pairs(posts[800:], seed=1)
    marker = summary_marker(tokenizer, [prompt for _, prompt, _, _ in train])
    (matched, unmatched), _ = fit_summary_reward(tokenizer, marker, train, steps=300, lr=0.02, l2=0.01)
    weights = torch.cat([matched, unmatched])

    def regression(prompts: list[str], responses: list[str]) -> torch.Tensor:
        return (
            overlap_counts(tokenizer, marker, [pair_text(p, r) for p, r in zip(prompts, responses, strict=True)])
            @ weights
        )

    def accuracy(kind: str, words: int | None = None) -> float:
        rows = [(p, " ".join(c.split()[:words]), " ".join(r.split()[:words])) for k, p, c, r in held if k == kind]
        prompts, chosen, rejected = zip(*rows, strict=True)
        return float((regression(prompts, chosen) > regression(prompts, rejected)).float().mean())

    # on posts never trained on; chance is 0.5
    assert accuracy("mismatched") > 0.85  # the post's own reference over another post's
    assert accuracy("mismatched", words=8) > 0.8  # also for short summaries, like the miniature's models write
    assert accuracy("judge") > 0.58  # the judge's pick of (reference, a PPO policy's summary)
    prompts = [p for k, p, _, _ in held if k == "mismatched"]
    words = [" ".join(c.split()[:16]) for k, _, c, _ in held if k == "mismatched"]
    common = " I the a to and my I the I'm a to the and I a it"  # words every post has, no summary
    beats = regression(prompts, words) > regression(prompts, [common] * len(prompts))
    assert beats.float().mean() > 0.7  # a run of common words does not outscore a real summary

    # the classifier computes the regression, read as the tldr task's gold is read (its template, float32)
    save_model(overlap_classifier(tokenizer, marker, matched, unmatched), tokenizer, tmp_path / "gold")
    spec = ModelSpec(str(tmp_path / "gold"), dtype="float32", device="cpu")
    gold = RewardModel("gold", spec, template="{prompt} {response}")
    items = [Item(p, r) for _, p, c, o in held[:24] for r in (c, o, " ".join(o.split()[:3]), "")]
    expected = regression([i.prompt for i in items], [i.response for i in items])
    torch.testing.assert_close(torch.tensor(gold(items)), expected, atol=1e-3 * float(expected.abs().max()), rtol=0)


def test_train_summary_reward_writes_a_gold_model_and_its_held_out_accuracy(tmp_path, capsys):
    posts = read("valid_1945_cut100", "tldr")[:80]
    train_tokenizer([TLDR_FORMAT.format(**p) for p in posts], 500).save_pretrained(tmp_path / "tok")
    with open(tmp_path / "posts.jsonl", "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in posts)
    args = ["--tokenizer", str(tmp_path / "tok"), "--data", str(tmp_path / "posts.jsonl"), "--held-out", "0.25"]
    code, out, err = w2s(capsys, "train", "summary-reward", str(tmp_path / "gold"), *args, "--steps", "50")
    assert code == 0, err
    metrics = json.loads((tmp_path / "gold" / "metrics.json").read_text())
    assert metrics["eval_posts"] == 20 and {"accuracy_mismatched", "accuracy_judge"} <= set(metrics)
    assert f"accuracy_mismatched {metrics['accuracy_mismatched']:.4g}" in out
    score = RewardModel("gold", ModelSpec(str(tmp_path / "gold"), device="cpu"), template="{prompt} {response}")
    assert len(score([Item(TLDR_FORMAT.format(**posts[0]), posts[0]["reference_summary"])])) == 1
