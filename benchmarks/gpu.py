"""The GPU path: a gpt2-large-shaped strong model (36 layers x 1280) with gpt2-shaped guides (12 x 768), random
weights, bf16, 64 prompts of 8 tokens: this engine's CBS (W,K,L = 4,4,5, 50 new tokens) against transformers'
`generate` of the same number of sequences, in tokens per second and peak device memory; and the cost of the
per-prompt sampling calls (one `torch.multinomial` per prompt, each with its own generator, which keeps a prompt's
draws independent of its batch) at 256 prompts, against one call for all rows.

`make bench` runs it after the CPU benchmark when CUDA is available. Shapes can be shrunk for a smoke run:

    python benchmarks/gpu.py [--device cuda] [--strong 36x1280] [--guide 12x768] [--prompts 64] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from engine import pseudo_text

from harness.backends.hf import HFModel
from harness.guide import Guide
from harness.methods import make_method
from harness.sampling import Sampler, groups_of
from harness.toy import build_gpt2, train_tokenizer
from harness.types import Request, SampleConfig

W, K, L, NEW = 4, 4, 5, 50


def shape(text: str) -> tuple[int, int]:
    """ "36x1280" -> (36, 1280)."""
    layers, width = (int(x) for x in text.split("x"))
    return layers, width


def timed(fn: Callable[[], object], device: torch.device, reps: int) -> float:
    """Median seconds of `fn` over `reps` runs, the device synchronised around each."""
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak device memory (GiB) allocated while `fn` runs; None off CUDA."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    return torch.cuda.max_memory_allocated(device) / 2**30


def gpt2(tokenizer, layers_width: tuple[int, int], seed: int, device: torch.device, dtype, **kwargs) -> HFModel:
    layers, width = layers_width
    model = build_gpt2(tokenizer, layers, width, n_head=width // 64, seed=seed, **kwargs).to(device, dtype)
    return HFModel(model, tokenizer, f"gpt2-{layers}x{width}")


def large(device: str, strong_shape: str, guide_shape: str, n_prompts: int, reps: int, tokenizer=None) -> dict:
    """Time CBS against generate and the sampling calls; returns the figures (also printed)."""
    device_ = torch.device(device)
    dtype = torch.bfloat16 if device_.type == "cuda" else torch.float32
    tokenizer = tokenizer or train_tokenizer(pseudo_text(30000, seed=0), 8000)
    strong = gpt2(tokenizer, shape(strong_shape), 1, device_, dtype, eos_logit=-30.0)  # never ends: full budget
    guide = Guide(
        gpt2(tokenizer, shape(guide_shape), 2, device_, dtype), gpt2(tokenizer, shape(guide_shape), 3, device_, dtype)
    )
    prompts = []
    for sentence in pseudo_text(20 * n_prompts, seed=1):
        ids = tokenizer(sentence)["input_ids"][:8]
        text = tokenizer.decode(ids)
        if len(ids) == 8 and len(tokenizer(text)["input_ids"]) == 8:
            prompts.append(text)
        if len(prompts) == n_prompts:
            break
    requests = [Request(str(i), p, seed=i) for i, p in enumerate(prompts)]
    batch = tokenizer(prompts, return_tensors="pt").to(device_)
    sample = SampleConfig(max_new_tokens=NEW, temperature=0.7, top_k=50)
    cbs = make_method("cbs", width=W, successors=K, chunk_length=L)

    def run_cbs():
        return cbs.decode(strong, requests, sample, guide=guide)

    def run_generate():
        with torch.inference_mode():
            return strong.model.generate(
                **batch, do_sample=True, temperature=0.7, top_k=50, max_new_tokens=NEW, min_new_tokens=NEW,
                num_return_sequences=W * K, pad_token_id=strong.pad_id,
            )  # fmt: skip

    run_cbs(), run_generate()  # warm-up: allocator, kernels, lazy imports
    cbs_s, generate_s = timed(run_cbs, device_, reps), timed(run_generate, device_, reps)
    cbs_gib, generate_gib = peak_memory(run_cbs, device_), peak_memory(run_generate, device_)
    tokens = len(requests) * W * K * NEW  # strong-model tokens sampled by either
    # the sampling step at 256 prompts x 16 rows: one multinomial per prompt (own generator) vs one for all rows
    sampler = Sampler(sample, device_)
    rows = 256 * W * K
    logits = torch.randn(rows, len(tokenizer), device=device_)
    groups = groups_of([r // (W * K) for r in range(rows)], [sampler.generator(p) for p in range(256)])
    per_prompt_s = timed(lambda: sampler.draw(logits, groups), device_, 20)
    one_call_s = timed(lambda: sampler.draw(logits, [(0, rows, sampler.generator(0))]), device_, 20)
    result = {
        "device": torch.cuda.get_device_name(device_) if device_.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "large_cbs_s": round(cbs_s, 3),
        "large_generate_s": round(generate_s, 3),
        "large_cbs_over_generate": round(cbs_s / generate_s, 3),
        "large_cbs_tokens_per_s": round(tokens / cbs_s),
        "large_generate_tokens_per_s": round(tokens / generate_s),
        "large_cbs_peak_gib": None if cbs_gib is None else round(cbs_gib, 2),
        "large_generate_peak_gib": None if generate_gib is None else round(generate_gib, 2),
        "sampling_256_per_prompt_ms": round(1000 * per_prompt_s, 3),
        "sampling_256_one_call_ms": round(1000 * one_call_s, 3),
    }
    print(f"strong {strong_shape}, guides {guide_shape}, vocab {len(tokenizer)}, {result['dtype']} on "
          f"{result['device']}; {len(requests)} prompts, W,K,L={W},{K},{L}, {NEW} new tokens; median of {reps}: "
          f"cbs {cbs_s:.2f}s ({tokens / cbs_s:.0f} tok/s, peak {cbs_gib or 0:.2f} GiB)  generate {generate_s:.2f}s "
          f"({tokens / generate_s:.0f} tok/s, peak {generate_gib or 0:.2f} GiB)  "
          f"cbs/generate {cbs_s / generate_s:.2f}; "
          f"sampling step at 256 prompts: per-prompt calls {1000 * per_prompt_s:.2f} ms, one call "
          f"{1000 * one_call_s:.2f} ms")  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--strong", default="36x1280", help="strong model layers x width")
    parser.add_argument("--guide", default="12x768", help="guide models layers x width")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions (median reported)")
    args = parser.parse_args()
    print(json.dumps(large(args.device, args.strong, args.guide, args.prompts, args.reps)))


if __name__ == "__main__":
    main()
