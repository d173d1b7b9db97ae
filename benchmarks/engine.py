"""Engine speed: this engine's CBS vs transformers' `generate` vs a naive reference-style CBS.

GPT-2-shaped models built here (strong 8 layers x 512, guides 2 x 256, byte-level BPE vocabulary of 8k, fp32,
random weights with EOS suppressed so every method generates its whole budget), 8 prompts of 8 tokens, torch
threads = cores. Prints medians over repetitions; the last line is one JSON object. Where CUDA is available it
then also times the GPU path (benchmarks/gpu.py: a gpt2-large-shaped strong model in bf16, 64 prompts).

    python benchmarks/engine.py [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Callable

import torch
from naive_cbs import naive_cbs

from harness.backends.hf import HFModel
from harness.guide import Guide
from harness.methods import make_method
from harness.toy import build_gpt2, train_tokenizer
from harness.types import Request, SampleConfig

SETTINGS = {  # name prefix -> (W, K, L, new tokens)
    "": (4, 4, 5, 50),
    "long_": (2, 2, 30, 128),
}


def pseudo_text(n_sentences: int, seed: int) -> list[str]:
    """Sentences of made-up words with a Zipf-like spread: enough distinct words for an 8k-token BPE."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(20000)]
    weights = [1 / (i + 1) for i in range(len(words))]
    return [" ".join(rng.choices(words, weights, k=rng.randint(5, 20))) + "." for _ in range(n_sentences)]


def build(vocab_size: int = 8000) -> tuple[HFModel, Guide, list[Request]]:
    tokenizer = train_tokenizer(pseudo_text(30000, seed=0), vocab_size)
    strong = HFModel(build_gpt2(tokenizer, 8, 512, n_head=8, seed=1, eos_logit=-30.0), tokenizer, "strong-8x512")
    guide = Guide(
        HFModel(build_gpt2(tokenizer, 2, 256, seed=2), tokenizer, "tuned-2x256"),
        HFModel(build_gpt2(tokenizer, 2, 256, seed=3), tokenizer, "untuned-2x256"),
    )
    prompts = []
    for sentence in pseudo_text(200, seed=1):
        ids = tokenizer(sentence)["input_ids"][:8]
        text = tokenizer.decode(ids)
        if len(ids) == 8 and len(tokenizer(text)["input_ids"]) == 8:
            prompts.append(text)
        if len(prompts) == 8:
            break
    return strong, guide, [Request(str(i), p, seed=i) for i, p in enumerate(prompts)]


def median_seconds(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    strong, guide, requests = build()
    tokenizer = strong.tokenizer
    batch = tokenizer([r.prompt for r in requests], return_tensors="pt")
    print(f"models: strong 8x512, guides 2x256, vocab {len(tokenizer)}, fp32, {torch.get_num_threads()} threads; "
          f"{len(requests)} prompts of {batch['input_ids'].shape[1]} tokens; median of {args.reps}")  # fmt: skip
    result = {}
    for prefix, (w, k, length, new) in SETTINGS.items():
        sample = SampleConfig(max_new_tokens=new, temperature=0.7, top_k=50)
        cbs = make_method("cbs", width=w, successors=k, chunk_length=length)

        def run_cbs(cbs=cbs, sample=sample):
            return cbs.decode(strong, requests, sample, guide=guide)

        def run_plain(w=w, k=k, new=new):
            with torch.inference_mode():
                return strong.model.generate(
                    **batch, do_sample=True, temperature=0.7, top_k=50, max_new_tokens=new, min_new_tokens=new,
                    num_return_sequences=w * k, pad_token_id=strong.pad_id,
                )  # fmt: skip

        def run_naive(w=w, k=k, length=length, sample=sample):
            return [naive_cbs(strong, guide, r.prompt, sample, w, k, length, r.seed) for r in requests]

        if not result:  # warm-up once: allocator, kernels, lazy imports
            run_cbs(), run_plain()
        cbs_s, plain_s, naive_s = (median_seconds(f, args.reps) for f in (run_cbs, run_plain, run_naive))
        result |= {
            f"{prefix}cbs_s": round(cbs_s, 3),
            f"{prefix}plain_s": round(plain_s, 3),
            f"{prefix}naive_s": round(naive_s, 3),
            f"{prefix}cbs_over_plain": round(cbs_s / plain_s, 3),
            f"{prefix}naive_over_cbs": round(naive_s / cbs_s, 3),
        }
        print(f"W,K,L={w},{k},{length}, {new} new tokens, {w * k} sequences per prompt: "
              f"cbs {cbs_s:.2f}s  generate {plain_s:.2f}s  naive cbs {naive_s:.2f}s  "
              f"cbs/generate {cbs_s / plain_s:.2f}  naive/cbs {naive_s / cbs_s:.2f}")  # fmt: skip
    if torch.cuda.is_available():  # the GPU path: a gpt2-large-shaped strong model in bf16 (benchmarks/gpu.py)
        from gpu import large

        result |= large("cuda", "36x1280", "12x768", 64, args.reps, tokenizer)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
