"""Peak memory of long responses: CBS at W,K,L = 2,2,30 up to 2,048 new tokens on chat-model-shaped models.

Models are built here (random weights, seeded) and saved once: a Llama-shaped strong model (4 layers x 256, 8 query
heads sharing 2 key/value heads, rotary positions, SwiGLU) and a guide pair sharing its vocabulary (2 layers x 128, 4
query / 2 key-value heads), all over one byte-level BPE vocabulary of up to 32k tokens (a chat model's size), EOS
never among the top-50 sampled from, so every row generates its whole budget. Two prompts of very different lengths
(16 and 768 tokens) are decoded in one batch, so the short one is padded to the long one. Each budget runs in a fresh
process that loads the models (peak noted), decodes a short warm-up, notes its peak resident memory (getrusage
maxrss), decodes the long run and notes the peak again. With CUDA it reports torch.cuda.max_memory_allocated instead.

Beside each measurement it prints what the KV caches must hold at the end: per model, 2 (keys, values) x layers x
key/value heads x head size x 4 bytes x rows x positions, where rows = prompts x W x K and positions = the longest
prompt + the budget (+ the guide's own padding of the reads of each chunk). Logits are kept for the last position
only (the strong model's, [rows, vocab]) and, when the guide scores a chunk, for at most LOGITS_BUDGET floats at once.

    python benchmarks/long_responses.py [--budgets 512 2048] [--vocab 32000]

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

W, K, L = 2, 2, 30
PROMPT_TOKENS = (16, 768)
VOCAB = 32000


def build(root: Path, vocab: int = VOCAB) -> None:
    """Tokenizer, strong model and guide pair, saved under `root`."""
    from engine import pseudo_text

    from harness.toy import build_llama, train_tokenizer

    tokenizer = train_tokenizer(pseudo_text(30000, seed=0), vocab)
    shapes = {"strong": (4, 256, 8, 2, 1), "tuned": (2, 128, 4, 2, 2), "untuned": (2, 128, 4, 2, 3)}
    for name, (layers, hidden, heads, kv_heads, seed) in shapes.items():
        model = build_llama(tokenizer, layers, hidden, n_head=heads, n_kv_head=kv_heads, seed=seed, max_positions=4096)
        with torch.no_grad():  # EOS's logit 0 sits mid-vocabulary, never among the top 50 sampled from
            model.lm_head.weight[tokenizer.eos_token_id] = 0
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    text = " ".join(pseudo_text(2000, seed=1))
    ids = tokenizer(text)["input_ids"]
    prompts = [tokenizer.decode(ids[i * 1000 : i * 1000 + n]) for i, n in enumerate(PROMPT_TOKENS)]
    (root / "prompts.json").write_text(json.dumps(prompts))


def peak_bytes() -> int:
    """Peak memory so far: CUDA allocations where there is a GPU, else the process's peak resident set."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def kv_bytes(model, rows: int, positions: int) -> int:
    """What a model's KV cache holds for `rows` rows of `positions` positions in float32."""
    c = model.config
    head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    return 2 * c.num_hidden_layers * c.num_key_value_heads * head * 4 * rows * positions


def child(root: Path, budget: int) -> dict:
    """One budget in this process: warm up, then the long run; what it added to peak memory."""
    from harness.backends.hf import HFModel
    from harness.guide import Guide
    from harness.methods import make_method
    from harness.types import ModelSpec, Request, SampleConfig, Template

    torch.set_num_threads(2)
    lm = {n: HFModel.load(ModelSpec(str(root / n), dtype="float32")) for n in ("strong", "tuned", "untuned")}
    guide = Guide(lm["tuned"], lm["untuned"])
    prompts = json.loads((root / "prompts.json").read_text())
    requests = [Request(str(i), p, seed=i) for i, p in enumerate(prompts)]
    cbs = make_method("cbs", width=W, successors=K, chunk_length=L)
    loaded = peak_bytes()
    cbs.decode(lm["strong"], requests, SampleConfig(max_new_tokens=L), guide=guide)  # warm-up: allocator, kernels
    before = peak_bytes()
    start = time.perf_counter()
    outputs = cbs.decode(lm["strong"], requests, SampleConfig(max_new_tokens=budget), guide=guide)
    seconds = time.perf_counter() - start
    after = peak_bytes()
    rows = len(requests) * W * K
    longest = max(len(lm["strong"].encode_prompt(Template(), p)) for p in prompts)
    expected = {n: kv_bytes(m.model, rows, longest + budget) for n, m in lm.items()}
    return {
        "budget": budget,
        "tokens": [len(o.tokens) for o in outputs],
        "seconds": round(seconds, 1),
        "loaded_mb": round(loaded / 2**20, 1),
        "peak_before_mb": round(before / 2**20, 1),
        "peak_after_mb": round(after / 2**20, 1),
        "over_loaded_mb": round((after - loaded) / 2**20, 1),
        "added_mb": round((after - before) / 2**20, 1),
        "vocab": lm["strong"].model.config.vocab_size,
        "kv_expected_mb": round(sum(expected.values()) / 2**20, 1),
        "logits_last_position_mb": round(rows * lm["strong"].model.config.vocab_size * 4 / 2**20, 1),
        "logits_every_position_would_be_mb": round(
            rows * (longest + budget) * lm["strong"].model.config.vocab_size * 4 / 2**20
        ),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--vocab", type=int, default=VOCAB, help="vocabulary size (default: %(default)s)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.root, args.child)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, args.vocab)
        results = []
        for budget in args.budgets:
            cmd = [sys.executable, __file__, "--child", str(budget), "--root", str(root)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"budget {budget:5d}: peak {r['peak_after_mb']:.0f} MB, {r['over_loaded_mb']:.0f} MB over the loaded "
                f"models ({r['added_mb']:.0f} MB over the warm-up); KV caches at the end {r['kv_expected_mb']:.0f} MB; "
                f"{r['seconds']} s; tokens {r['tokens']}",
                flush=True,
            )
    print(json.dumps({"W,K,L": [W, K, L], "prompt_tokens": PROMPT_TOKENS, "vocab": args.vocab, "runs": results}))


if __name__ == "__main__":
    main()
