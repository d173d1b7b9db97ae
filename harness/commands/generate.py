"""Decode a few prompts with one method and print one JSON line per prompt (text, tokens, score, compute)."""

from __future__ import annotations

import argparse
import json
import math
import sys

from harness.commands import parse_assignments
from harness.errors import require

GUIDE = ("tuned", "untuned")
HELP = "decode prompts with a method (plain, bon, cbs, eft, urial) and print JSON lines"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strong", required=True, help="strong model: hub id or local directory")
    p.add_argument("--tuned", help="guide's tuned model (needed by bon, cbs, eft)")
    p.add_argument("--untuned", help="guide's untuned model (needed by bon, cbs, eft)")
    p.add_argument("--method", default="plain", help="plain, bon, cbs, eft or urial (default: plain)")
    p.add_argument(
        "--set",
        dest="params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method parameter, e.g. --set width=4 --set successors=4 --set chunk_length=5",
    )
    p.add_argument("--prompt", dest="prompts", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--template", default="{prompt}", help="strong model's template (default: {prompt})")
    p.add_argument("--guide-template", default="{prompt}", help="guide's template (default: {prompt})")
    p.add_argument("--chat", action="store_true", help="wrap both templates in each model's chat template")
    p.add_argument("--beta", type=float, default=1.0, help="guide's reward scale (default: 1.0)")
    p.add_argument("--max-new-tokens", type=int, default=50)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="prompt i uses seed + i")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")


def run(args: argparse.Namespace) -> int:
    from harness.backends.hf import HFModel, ModelSpec, Template
    from harness.commands import quiet_transformers

    quiet_transformers()
    from harness.guide import Guide
    from harness.methods import make_method, strong_template
    from harness.preflight import check_prompts, inspect_model
    from harness.types import Request, SampleConfig

    # everything that can be wrong with the arguments is checked before any model loads
    method = make_method(args.method, **parse_assignments(args.params))
    sample = SampleConfig(args.max_new_tokens, args.temperature, args.top_k, args.top_p, tuple(args.stop))
    require(args.prompts, "no prompts: give at least one --prompt")
    if method.needs_guide:
        require(args.tuned and args.untuned, f"method {method.name!r} needs --tuned and --untuned")
        require(0 < args.beta < math.inf, f"--beta must be a finite number > 0, got {args.beta}")
    template = strong_template(method, Template(args.template, args.chat))  # urial: its in-context prompt
    guide_template = Template(args.guide_template, args.chat)
    spec = {"strong": ModelSpec(args.strong, dtype=args.dtype, device=args.device)}
    if method.needs_guide:
        spec |= {role: ModelSpec(getattr(args, role), dtype=args.dtype, device=args.device) for role in GUIDE}
    files = {role: inspect_model(s) for role, s in spec.items()}  # device, config, weights and tokenizer present
    for role, model in files.items():
        name = getattr(args, role)
        require(not args.chat or model.tokenizer.chat_template, f"--{role} {name} has no chat template; drop --chat")
        check_prompts(model, guide_template if role in GUIDE else template, args.prompts, sample.max_new_tokens)
        if method.name == "eft" and role in GUIDE:
            require(
                model.tokenizer.get_vocab() == files["strong"].tokenizer.get_vocab(),
                f"eft needs guides that share the strong model's vocabulary, but --{role} and --strong differ; "
                "use cbs or bon, which re-tokenise",
            )

    strong = HFModel.load(spec["strong"])
    guide = Guide(*(HFModel.load(spec[r]) for r in GUIDE), args.beta, guide_template) if method.needs_guide else None
    requests = [Request(str(i), p, args.seed + i) for i, p in enumerate(args.prompts)]
    for output in method.decode(strong, requests, sample, template=template, guide=guide):
        print(json.dumps({"method": method.label(), **output.as_dict()}), file=sys.stdout)
    return 0
