"""The offline miniature: every model configs/offline-small.yaml needs, trained here from the data in data/.

Small GPT-2s stand in for the paper's models: an untuned guide (a language model of reviews and Reddit posts),
its tuned versions (further trained on positive reviews, or on posts followed by their human TL;DR: a supervised
stand-in for the paper's DPO), two larger strong models, and one strong model tuned directly on positive reviews.
The gold rewards are small classifiers: review sentiment (IMDB labels) and whether a summary belongs to its post.
These models exercise the harness end to end in minutes on a CPU; they do not reproduce the paper's numbers.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from pathlib import Path

from harness.errors import require
from harness.preflight import make_output_dir
from tasks.base import load_records

TLDR_FORMAT = "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:"


def build_zoo(out: Path, data: Path, scale: float = 1.0, log: Callable[[str], None] = print) -> list[Path]:
    """Train and save every model of the miniature under `out`; `scale` multiplies all training steps."""
    import torch

    from harness.toy import build_classifier, build_gpt2, train_causal_lm, train_classifier, train_tokenizer

    imdb, tldr = Path(data) / "imdb" / "train_3k.jsonl.gz", Path(data) / "tldr" / "valid_1000.jsonl.gz"
    for path in (imdb, tldr):
        require(path.is_file(), f"{path} not found; run from the project root or pass --data DIR")
    make_output_dir(out, "output directory", "give another OUT")  # before minutes of training, not after
    torch.manual_seed(0)
    reviews = load_records(str(imdb), "train")
    review_text = [r["text"].replace("<br />", " ") for r in reviews]
    positive = [t for t, r in zip(review_text, reviews, strict=True) if r["label"] == 1]
    posts = load_records(str(tldr), "validation")
    prompts = [TLDR_FORMAT.format(**p) for p in posts]
    summaries = [p["summary"] for p in posts]
    tokenizer = train_tokenizer(review_text + prompts + summaries, 2000)
    steps = lambda n: max(1, round(n * scale))  # noqa: E731
    saved: list[Path] = []

    def save(name: str, model) -> None:
        path = Path(out) / name
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        saved.append(path)
        log(f"saved {path}")

    mixed = review_text + [p + " " + s for p, s in zip(prompts, summaries, strict=True)]
    base = train_causal_lm(build_gpt2(tokenizer, 2, 128, seed=1), tokenizer, mixed, steps(150), seed=1)
    save("guide-untuned", base)
    save("guide-imdb", train_causal_lm(copy.deepcopy(base).train(), tokenizer, positive, steps(150), lr=2e-3, seed=2))
    tldr_sft = [f"{p} {s}" for p, s in zip(prompts, summaries, strict=True)]
    save("guide-tldr", train_causal_lm(copy.deepcopy(base).train(), tokenizer, tldr_sft, steps(150), lr=2e-3, seed=3))
    strong_s = train_causal_lm(build_gpt2(tokenizer, 3, 160, seed=4), tokenizer, mixed, steps(150), seed=4)
    save("strong-s", strong_s)
    strong_m = train_causal_lm(build_gpt2(tokenizer, 4, 192, seed=5), tokenizer, mixed, steps(200), seed=5)
    save("strong-m", strong_m)
    tuned = train_causal_lm(copy.deepcopy(strong_m).train(), tokenizer, positive, steps(60), lr=1e-3, seed=6)
    save("strong-m-imdb-tuned", tuned)
    sentiment = build_classifier(tokenizer, ["NEGATIVE", "POSITIVE"], seed=7)
    labels = [r["label"] for r in reviews]
    save("imdb-gold", train_classifier(sentiment, tokenizer, review_text, labels, steps(150), seed=7))
    rng = random.Random(8)
    mismatched = [summaries[(i + rng.randrange(1, len(summaries))) % len(summaries)] for i in range(len(summaries))]
    pairs = [f"{p} {s}" for p, s in zip(prompts + prompts, summaries + mismatched, strict=True)]
    relevance = build_classifier(tokenizer, None, seed=8)
    targets = [1.0] * len(prompts) + [0.0] * len(prompts)
    save("tldr-gold", train_classifier(relevance, tokenizer, pairs, targets, steps(150), max_len=256, seed=8))
    return saved
