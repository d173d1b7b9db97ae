"""Fine-tune a causal language model with trl: `w2s tune sft` (supervised) or `w2s tune dpo` (preference pairs).

The output directory becomes a model directory the studies load (weights and tokenizer; with --lora the merged
weights, and the adapter alone under adapter/), with tune.json (settings, training log). Killed, the same command
resumes from the last checkpoint; finished, it does nothing; other settings for the same directory are refused.
"""

from __future__ import annotations

import argparse

HELP = "fine-tune a causal LM with trl: sft (text or prompt/completion) or dpo (prompt/chosen/rejected)"
DEFAULT_LR = {"sft": 2e-5, "dpo": 1e-6}  # trl's defaults for each trainer
DATA_HELP = {
    "sft": "training data: a .jsonl/.json(.gz)/.parquet file or hub dataset id, rows with `text`, "
    "`prompt`+`completion` or chat `messages`",
    "dpo": "preference pairs: a .jsonl/.json(.gz)/.parquet file or hub dataset id, rows with `prompt`, `chosen` "
    "and `rejected` (what `w2s prefs` writes), or `responses` and a `chosen` index (ZHZisZZ/imdb_preference)",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND", parser_class=type(p))
    for kind in ("sft", "dpo"):
        k = kinds.add_parser(kind, help=f"{kind.upper()} with trl's {kind.upper()}Trainer", description=__doc__)
        _kind_arguments(k, kind)


def _kind_arguments(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("model", help="the causal LM to tune: hub id or local model directory")
    p.add_argument("data", help=DATA_HELP[kind])
    p.add_argument("out", help="output directory: the tuned model, tune.json, and checkpoints while training")
    p.add_argument("--split", default="train", help="split to read when DATA is a hub dataset (default: train)")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default: 1)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps; overrides --epochs (default: none)")
    lr = DEFAULT_LR[kind]
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default: {lr}, trl's for {kind})")
    p.add_argument("--batch-size", type=int, default=8, help="examples per device per step (default: 8)")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default: 1)")
    p.add_argument("--max-length", type=int, default=512, help="tokens per example, prompt included (default: 512)")
    if kind == "dpo":
        p.add_argument("--beta", type=float, default=0.1, help="DPO's KL strength beta (default: 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, data order and dropout (default: 0)")
    p.add_argument("--warmup", type=float, default=0.0, help="linear warmup, a fraction of the steps (default: 0)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default: 0)")
    p.add_argument("--scheduler", default="linear", help="learning-rate schedule, as transformers names it (linear)")
    p.add_argument("--lora", action="store_true", help="tune a LoRA adapter (peft), then save merged weights")
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default: 16)")
    p.add_argument("--lora-alpha", type=float, default=32.0, help="LoRA alpha (default: 32)")
    p.add_argument("--lora-dropout", type=float, default=0.05, help="LoRA dropout (default: 0.05)")
    p.add_argument(
        "--lora-target",
        dest="lora_targets",
        action="append",
        default=[],
        help="module name to adapt (repeatable; default: peft's choice for the architecture)",
    )
    p.add_argument("--precision", default="auto", help="auto (bf16 on a GPU that has it, else fp32), bf16 or fp32")
    p.add_argument("--device", default="auto", help="auto (cuda where there is one), cpu or cuda")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations to save memory")
    p.add_argument("--save-steps", type=int, default=100, help="checkpoint every N steps, to resume from (100)")
    p.add_argument("--logging-steps", type=int, default=10, help="log the loss every N steps (default: 10)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep checkpoints/ after the model is saved")


def settings(args: argparse.Namespace):
    """The TuneSettings and RunOptions the arguments name."""
    from pathlib import Path

    from training.tune import RunOptions, TuneSettings

    s = TuneSettings(
        kind=args.kind,
        model=args.model,
        data=args.data,
        split=args.split,
        epochs=args.epochs,
        max_steps=args.max_steps,
        lr=args.lr,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_length=args.max_length,
        beta=getattr(args, "beta", 0.1),
        seed=args.seed,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        scheduler=args.scheduler,
        lora=args.lora,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_targets=tuple(args.lora_targets),
        precision=args.precision,
        device=args.device,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    run = RunOptions(Path(args.out), args.save_steps, args.logging_steps, args.keep_checkpoints)
    return s, run


def run(args: argparse.Namespace) -> int:
    from harness.commands import quiet_transformers

    quiet_transformers()
    import datasets

    datasets.disable_progress_bars()  # the trainer's own progress bar is the one to watch
    from training.tune import prepare, train

    job = prepare(*settings(args))  # every check before any weights load
    train(job)
    return 0
