"""Language models pretrained from scratch on the shipped text: a byte-level BPE tokenizer, GPT-2-shaped models of a
chosen size trained on next-token prediction, and their held-out perplexity (how the miniature shows its strong
models really are stronger than its guide)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from harness.errors import UsageError, require
from tasks.base import load_records

TLDR_FORMAT = "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:"


def document(row: dict, source: str) -> str:
    """A data row as training text: an IMDB review, or a Reddit post in the tldr task's prompt format followed by
    its human summary."""
    if "text" in row:
        return str(row["text"]).replace("<br />", " ")
    if {"subreddit", "title", "post"} <= row.keys():
        summary = row.get("summary") or row.get("reference_summary") or ""
        return TLDR_FORMAT.format(**row) + " " + str(summary).strip()
    raise UsageError(f"rows of {source} have neither `text` (a review) nor subreddit/title/post (a Reddit post)")


def read_documents(paths: list[str], limit: int | None = None) -> list[str]:
    """Every row of the given files as text (the first `limit` of each file where given)."""
    docs = []
    for path in paths:
        rows = load_records(path, "train")
        docs += [document(row, path) for row in rows[:limit]]
    require(bool(docs), f"no text in {', '.join(paths)}; give files of IMDB reviews or Reddit posts")
    return docs


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """The texts tokenised and joined, each followed by EOS."""
    stream: list[int] = []
    for ids in tokenizer(texts)["input_ids"]:
        stream += [*ids, tokenizer.eos_token_id]
    return torch.tensor(stream)


def train_lm(
    model,
    tokenizer,
    texts: list[str],
    steps: int,
    *,
    batch_size: int = 16,
    seq_len: int = 128,
    lr: float = 3e-3,
    warmup: float = 0.05,
    seed: int = 0,
):
    """Next-token training on random windows of the texts joined by EOS, AdamW with linear warmup then cosine decay,
    under bf16 autocast (about 2x faster than float32 on a CPU). Returns the model and its final training loss."""
    data = token_stream(tokenizer, texts)
    require(len(data) > seq_len + 1, f"{len(data)} tokens of text is too little for windows of {seq_len}")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.95))
    ramp = max(1, round(warmup * steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / ramp if s < ramp else 0.5 * (1 + math.cos(math.pi * (s - ramp) / max(1, steps - ramp))),
    )
    model.train()
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
        batch = torch.stack([data[s : s + seq_len] for s in starts.tolist()])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.device.type == "cpu"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    tail = losses[-max(1, steps // 20) :]
    return model.eval(), sum(tail) / len(tail)


@torch.inference_mode()
def perplexity(model, tokenizer, texts: list[str], max_len: int = 256, batch_size: int = 16) -> float:
    """Per-token perplexity of held-out documents (each read from its start, EOS-prefixed, up to `max_len`)."""
    total, count = 0.0, 0
    eos = tokenizer.eos_token_id
    for i in range(0, len(texts), batch_size):
        rows = [[eos, *ids][:max_len] for ids in tokenizer(texts[i : i + batch_size])["input_ids"]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [eos] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        keep = mask[:, 1:].bool()
        total += float(nll[keep].sum())
        count += int(keep.sum())
    return math.exp(total / count)


def save_model(model, tokenizer, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
