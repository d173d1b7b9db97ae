"""Black-box CBS throughput: the engine's strong model of `engine.py` (8 x 512) served by `w2s serve` on 127.0.0.1,
steered through the OpenAI-compatible backend with the same guides (2 x 256), at concurrency 1 and 8.

8 prompts (--prompts), W,K,L = 4,4,5, 50 new tokens, median of --reps runs. Reports wall time, requests, and
strong-model tokens sampled per second (every row's chunks; the server's billed completion tokens).

    python benchmarks/api.py [--reps 3] [--prompts 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
from engine import build, median_seconds

from harness.backends.openai_api import CompletionsModel
from harness.methods import make_method
from harness.types import APIModelSpec, SampleConfig

W, K, L, NEW = 4, 4, 5, 50


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(model_dir: Path, port: int) -> subprocess.Popen:
    """`w2s serve` on 127.0.0.1, once it answers."""
    argv = [sys.executable, "-m", "harness.cli", "serve", str(model_dir), "--name", "strong", "--port", str(port)]
    server = subprocess.Popen([*argv, "--device", "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("w2s serve did not start within 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement (median reported)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts decoded together (at most 8)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    strong, guide, requests = build()
    requests = requests[: args.prompts]
    sample = SampleConfig(max_new_tokens=NEW, temperature=0.7, top_k=50)
    cbs = make_method("cbs", width=W, successors=K, chunk_length=L)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        strong.model.save_pretrained(tmp)
        strong.tokenizer.save_pretrained(tmp)
        port = free_port()
        server = serve(Path(tmp), port)
        try:
            for concurrency in (1, 8):
                model = CompletionsModel(APIModelSpec(f"http://127.0.0.1:{port}/v1", "strong", concurrency=concurrency))

                def run(model=model):
                    return cbs.decode(model, requests, sample, guide=guide)

                outputs = run()  # warm-up, and what one run costs
                seconds = median_seconds(run, args.reps)
                sampled = len(requests) * W * K * NEW  # strong tokens sampled: the model never ends early
                calls = sum(o.compute.requests for o in outputs)
                result |= {
                    f"api_c{concurrency}_s": round(seconds, 3),
                    f"api_c{concurrency}_requests": calls,
                    f"api_c{concurrency}_tokens_per_s": round(sampled / seconds),
                }
                print(f"concurrency {concurrency}: {seconds:.2f}s for {len(requests)} prompts, {calls} requests, "
                      f"{sampled / seconds:.0f} strong tokens/s")  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)
    result["api_c8_over_c1"] = round(result["api_c1_s"] / result["api_c8_s"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
