"""Serve a local Hugging Face model over an OpenAI-compatible API (/v1/models, /v1/completions,
/v1/chat/completions), sampled by the engine: a request with a seed always gets the same answer.

A study then steers it like any remote model (`backend: openai`, `base_url: http://HOST:PORT/v1`).
"""

from __future__ import annotations

import argparse
import os
import socket

HELP = "serve a local model over an OpenAI-compatible API (completions and chat completions)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="hub id or local model directory")
    p.add_argument("--name", help="the model name clients ask for (default: the model argument)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument(
        "--api-key-env", metavar="NAME", help="name of an environment variable holding the key clients must send"
    )
    p.add_argument("--max-batch-rows", type=int, default=64, help="most sequences decoded together (default: 64)")


def run(args: argparse.Namespace) -> int:
    from harness.errors import UsageError, require

    require(0 < args.port < 65536, f"--port must be in 1..65535, got {args.port}")
    require(args.max_batch_rows >= 1, f"--max-batch-rows must be >= 1, got {args.max_batch_rows}")
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        require(bool(api_key), f"environment variable {args.api_key_env} is not set; export the key clients must send")
    with socket.socket() as probe:  # a busy port is found before the model loads
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a restart is not refused
        try:
            probe.bind((args.host, args.port))
        except OSError as err:
            message = f"cannot listen on {args.host}:{args.port} ({err.strerror}); choose another --port"
            raise UsageError(message) from None
    from harness.backends.hf import HFModel
    from harness.commands import quiet_transformers
    from harness.preflight import inspect_model
    from harness.serve import serve
    from harness.types import ModelSpec

    quiet_transformers()
    spec = ModelSpec(args.model, dtype=args.dtype, device=args.device)
    inspect_model(spec)  # its device, config, weights and tokenizer, before the weights load
    lm = HFModel.load(spec)
    serve(lm, args.name or args.model, args.host, args.port, api_key, args.max_batch_rows)
    return 0
