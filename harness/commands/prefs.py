"""Build gold-labelled preference pairs for DPO, as ZHZisZZ/imdb_preference was built: two sampled continuations per
prompt of a task, both scored by the task's gold reward, the preferred one drawn under Bradley-Terry
P(a > b) = sigmoid(r_a - r_b) with a seed (or the higher reward, --label argmax). Writes trl's prompt/chosen/rejected
JSON lines with score_chosen, score_rejected and p_chosen on every row; `w2s tune dpo` trains on the file.
"""

from __future__ import annotations

import argparse

HELP = "sample two responses per task prompt, label them with the gold reward (Bradley-Terry), write DPO pairs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="the model to sample from: hub id or local directory (the paper: the untuned guide)")
    p.add_argument("out", help="the .jsonl file to write (replaced whole when done)")
    p.add_argument("--task", default="imdb", help="the task whose prompts and gold reward to use (default: imdb)")
    p.add_argument("--data", help="the task's data: hub id or local file (default: the task's, as in a study)")
    p.add_argument("--split", help="split to read when --data is a hub dataset (default: the task's)")
    p.add_argument("--gold", help="gold reward model: hub id or local directory (default: the task's)")
    p.add_argument("--limit", type=int, help="use the first N prompts (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seeds every sample and label draw, per prompt id (default: 0)")
    p.add_argument(
        "--label", default="bt", help="bt: draw the preferred one under Bradley-Terry; argmax: take the higher"
    )
    p.add_argument("--template", help="how the model sees a prompt, with {prompt} (default: the task's guide template)")
    p.add_argument("--max-new-tokens", type=int, help="tokens per response (default: the task's)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the task's)")
    p.add_argument("--top-k", type=int, help="top-k filtering, 0 disables it (default: the task's)")
    p.add_argument("--top-p", type=float, help="nucleus filtering, 1 disables it (default: the task's)")
    p.add_argument("--batch-size", type=int, default=16, help="prompts sampled together (default: 16)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--dtype", default="auto", help="the model's dtype: auto, float32, bfloat16 or float16")
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other task option, as under tasks.<task> in a study config, e.g. --set prefix_words=[2,8]",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.commands import parse_assignments, quiet_transformers

    quiet_transformers()
    from training.prefs import PrefsSettings, build_pairs, prepare

    settings = PrefsSettings(
        task=args.task,
        model=args.model,
        out=Path(args.out),
        data=args.data,
        split=args.split,
        gold=args.gold,
        limit=args.limit,
        seed=args.seed,
        label=args.label,
        template=args.template,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        task_options=parse_assignments(args.options),
    )
    job = prepare(settings)  # every check before any weights load
    path = build_pairs(job)
    print(f"{len(job.examples)} pairs in {path}; next: w2s tune dpo MODEL {path} OUT")
    return 0
