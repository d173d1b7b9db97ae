"""Train the miniature's models from the shipped data, from scratch and offline (configs/fig3-mini.yaml runs these):

  w2s train tokenizer OUT --text FILE ...       a byte-level BPE tokenizer
  w2s train lm OUT --tokenizer DIR --text FILE  a GPT-2 language model of a chosen size; held-out perplexity
  w2s train sentiment OUT --tokenizer DIR ...   IMDB sentiment gold (NEGATIVE/POSITIVE); held-out accuracy
  w2s train summary-reward OUT --tokenizer DIR  TL;DR scalar gold reward (Bradley-Terry on summary pairs)

Each writes a model directory the studies load, and metrics.json with what it measured.
"""

from __future__ import annotations

import argparse

HELP = "train the miniature's tokenizer, language models and gold reward models from local data"


def _common(p: argparse.ArgumentParser, steps: int, lr: float, batch: int | None) -> None:
    p.add_argument("out", metavar="OUT", help="directory to write the model to")
    p.add_argument("--steps", type=int, default=steps, help=f"optimizer steps (default: {steps})")
    p.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default: {lr})")
    if batch is not None:
        p.add_argument("--batch", type=int, default=batch, help=f"examples per step (default: {batch})")
    p.add_argument("--seed", type=int, default=0, help="seeds initialisation and batches (default: 0)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0: torch's default (default: 0)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", required=True, metavar="WHAT", parser_class=type(p))
    tok = sub.add_parser("tokenizer", help="a byte-level BPE tokenizer trained on the text of data files")
    tok.add_argument("out", metavar="OUT", help="directory to write the tokenizer to")
    tok.add_argument("--text", nargs="+", required=True, metavar="FILE", help="reviews or Reddit posts (.jsonl[.gz])")
    tok.add_argument("--vocab", type=int, default=4096, help="vocabulary size (default: 4096)")
    lm = sub.add_parser("lm", help="a GPT-2 language model pretrained from scratch")
    _common(lm, 300, 3e-3, 16)
    lm.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory (w2s train tokenizer)")
    lm.add_argument("--text", nargs="+", required=True, metavar="FILE", help="training text files (.jsonl[.gz])")
    lm.add_argument("--layers", type=int, default=2, help="transformer blocks (default: 2)")
    lm.add_argument("--dim", type=int, default=128, help="hidden size (default: 128)")
    lm.add_argument("--heads", type=int, default=4, help="attention heads (default: 4)")
    lm.add_argument("--seq-len", type=int, default=128, help="training window in tokens (default: 128)")
    lm.add_argument("--eval", metavar="FILE", help="held-out reviews or posts: report their perplexity")
    lm.add_argument("--eval-limit", type=int, default=200, help="held-out rows read (default: 200)")
    sent = sub.add_parser("sentiment", help="IMDB sentiment classifier on labelled reviews (the imdb gold)")
    _common(sent, 400, 0.05, None)
    sent.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory (w2s train tokenizer)")
    sent.add_argument("--l2", type=float, default=1e-4, help="L2 penalty on the token weights (default: 1e-4)")
    sent.add_argument("--data", required=True, metavar="FILE", help="labelled reviews (`text`, `label` 0/1)")
    sent.add_argument("--eval", required=True, metavar="FILE", help="held-out labelled reviews: report accuracy")
    rm = sub.add_parser("summary-reward", help="TL;DR scalar reward model on summary pairs (the tldr gold)")
    _common(rm, 300, 0.02, None)
    rm.add_argument("--tokenizer", required=True, metavar="DIR", help="tokenizer directory (w2s train tokenizer)")
    rm.add_argument("--l2", type=float, default=0.01, help="L2 penalty on the per-token weights (default: 0.01)")
    rm.add_argument(
        "--data", required=True, metavar="FILE", help="posts with reference_summary, model_summary, gpt_judge_preferred"
    )
    rm.add_argument("--held-out", type=float, default=0.1, help="fraction of posts kept for accuracy (default: 0.1)")


def run(args: argparse.Namespace) -> int:
    import math

    from harness.errors import require
    from harness.preflight import check_output_dir

    check_output_dir(args.out, "output directory", "give another OUT")
    for name in ("steps", "batch", "vocab", "layers", "dim", "heads", "seq_len", "eval_limit", "max_len"):
        value = getattr(args, name, 1)
        require(value >= 1, f"--{name.replace('_', '-')} must be >= 1, got {value}")
    lr = getattr(args, "lr", 1.0)
    require(math.isfinite(lr) and lr > 0, f"--lr must be a number > 0, got {lr}")
    l2 = getattr(args, "l2", 0.0)
    require(math.isfinite(l2) and l2 >= 0, f"--l2 must be a number >= 0, got {l2}")
    held = getattr(args, "held_out", 0.5)
    require(0 < held < 1, f"--held-out must be between 0 and 1, got {held}")
    for path in [*getattr(args, "text", []), *(getattr(args, k, None) or "" for k in ("data", "eval"))]:
        require(not path or _is_file(path), f"data file {path!r} does not exist; give a .jsonl or .jsonl.gz file")
    for key in ("tokenizer", "init"):
        path = getattr(args, key, None)
        require(path is None or _is_dir(path), f"--{key} {path!r} is not a directory; give one a w2s train wrote")
    if args.what == "lm":
        require(args.dim % args.heads == 0, f"--dim must be a multiple of --heads, got {args.dim} and {args.heads}")
    import torch

    from harness.commands import quiet_transformers

    quiet_transformers()
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    metrics = {"tokenizer": _tokenizer, "lm": _lm, "sentiment": _sentiment, "summary-reward": _summary}[args.what](args)
    _write_metrics(args.out, metrics)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    return 0


def _is_file(path: str) -> bool:
    from pathlib import Path

    return Path(path).expanduser().is_file()


def _is_dir(path: str) -> bool:
    from pathlib import Path

    return Path(path).expanduser().is_dir()


def _write_metrics(out: str, metrics: dict) -> None:
    import json
    from pathlib import Path

    (Path(out) / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")


def _tokenizer(args) -> dict:
    from pathlib import Path

    from harness.toy import train_tokenizer
    from training.pretrain import read_documents

    texts = read_documents(args.text)
    tokenizer = train_tokenizer(texts, args.vocab)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    return {"vocab": len(tokenizer), "documents": len(texts)}


def _lm(args) -> dict:
    from pathlib import Path

    from transformers import AutoTokenizer

    from harness.toy import build_gpt2
    from training.pretrain import perplexity, read_documents, save_model, train_lm

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    texts = read_documents(args.text)
    model = build_gpt2(tokenizer, args.layers, args.dim, args.heads, seed=args.seed)
    model, loss = train_lm(
        model, tokenizer, texts, args.steps, batch_size=args.batch, seq_len=args.seq_len, lr=args.lr, seed=args.seed
    )
    save_model(model, tokenizer, Path(args.out))
    metrics = {"params_m": sum(p.numel() for p in model.parameters()) / 1e6, "train_loss": loss}
    if args.eval:
        metrics["eval_perplexity"] = perplexity(model, tokenizer, read_documents([args.eval], args.eval_limit))
    return metrics


def _sentiment(args) -> dict:
    from pathlib import Path

    from transformers import AutoTokenizer

    from tasks.base import load_records
    from training.pretrain import save_model
    from training.reward import averaging_classifier, fit_sentiment, sentiment_accuracy

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    rows, held = load_records(args.data, "train"), load_records(args.eval, "test")
    (weights, bias), loss = fit_sentiment(tokenizer, rows, args.steps, args.lr, args.l2, args.seed)
    model = averaging_classifier(tokenizer, weights, bias)
    save_model(model, tokenizer, Path(args.out))
    return {"train_loss": loss, "eval_accuracy": sentiment_accuracy(model, tokenizer, held), "eval_rows": len(held)}


def _summary(args) -> dict:
    import random
    from pathlib import Path

    from transformers import AutoTokenizer

    from harness.errors import require
    from tasks.base import load_records
    from training.pretrain import save_model
    from training.reward import fit_summary_reward, overlap_classifier, pair_accuracy, summary_marker, summary_pairs

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.pad_token = tokenizer.eos_token
    posts = load_records(args.data, "validation")
    fields = ("subreddit", "title", "post", "reference_summary")
    lacking = next((r for r in posts if not all(isinstance(r.get(k), str) for k in fields)), None)
    require(
        lacking is None, f"rows of {args.data} need text fields {', '.join(fields)}; give Reddit posts with summaries"
    )
    random.Random(args.seed).shuffle(posts)
    cut = round(len(posts) * (1 - args.held_out))
    require(
        2 <= cut <= len(posts) - 2, f"{args.data} has {len(posts)} posts: too few to keep 2 for training and 2 held out"
    )
    train, held = summary_pairs(posts[:cut], args.seed), summary_pairs(posts[cut:], args.seed + 1)
    marker = summary_marker(tokenizer, [prompt for _, prompt, _, _ in train])
    (matched, unmatched), loss = fit_summary_reward(tokenizer, marker, train, args.steps, args.lr, args.l2)
    model = overlap_classifier(tokenizer, marker, matched, unmatched, seed=args.seed)
    save_model(model, tokenizer, Path(args.out))
    return {"train_loss": loss} | pair_accuracy(model, tokenizer, held) | {"eval_posts": len(posts) - cut}
