"""Gold reward models on real labels, each a GPT-2 sequence classifier started from a pretrained language model:

- IMDB sentiment: a logistic regression on token frequencies, fitted to the NEGATIVE/POSITIVE labels of review
  openings (as long as a prompt plus a 50-token response), written exactly into a one-layer GPT-2 classifier whose
  attention averages over the tokens, so logit(POSITIVE) - logit(NEGATIVE) is the regression's logit and the
  harness loads it like any gold model (a small transformer trained from scratch learns sentiment far slower on a
  CPU: about 65% held-out accuracy after minutes);
- TL;DR: a scalar reward fitted by the Bradley-Terry loss on summary pairs of Reddit posts: the human reference
  over a summary of another post (mismatched), and, where a judge compared them, the judge's pick over the other
  of (human reference, a 1.3B PPO policy's summary).

Both report held-out accuracy on rows they never trained on.
"""

from __future__ import annotations

import random

import torch

from training.pretrain import TLDR_FORMAT

LABELS = ["NEGATIVE", "POSITIVE"]
FREQ_SCALE = 30.0


def classifier_from(lm_dir: str, num_labels: int):
    """A GPT-2 sequence classifier whose body is the language model in `lm_dir` (its head starts at random)."""
    from transformers import AutoTokenizer, GPT2ForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(lm_dir)
    tokenizer.pad_token = tokenizer.eos_token
    names = LABELS if num_labels == 2 else ["score"]
    model = GPT2ForSequenceClassification.from_pretrained(
        lm_dir,
        num_labels=num_labels,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        pad_token_id=tokenizer.eos_token_id,
    )
    return model, tokenizer


def review_opening(text: str, rng: random.Random, lo: int = 8, hi: int = 60) -> str:
    """The first n words of a review, n uniform in [lo, hi]: what the gold model reads (prompt + response)."""
    words = text.replace("<br />", " ").split()
    return " ".join(words[: rng.randint(lo, hi)])


def _logits(model, tokenizer, texts: list[str], max_len: int) -> torch.Tensor:
    tokenizer.truncation_side = "left"  # as the harness's RewardModel reads: a long input keeps its end
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.device.type == "cpu"):
        return model(**inputs).logits.float()


def _optimizer(model, lr: float, steps: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    ramp = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / ramp) * (1 - s / steps))
    return optimizer, schedule


def token_frequencies(tokenizer, texts: list[str], scale: float = FREQ_SCALE) -> torch.Tensor:
    """Each text as its tokens' frequencies (counts / length), times `scale` to keep the fit well conditioned."""
    rows = tokenizer(texts)["input_ids"]
    x = torch.zeros(len(texts), len(tokenizer))
    for i, ids in enumerate(rows):
        x[i].index_add_(0, torch.tensor(ids, dtype=torch.long), torch.full((len(ids),), scale / max(1, len(ids))))
    return x


def fit_sentiment(tokenizer, rows: list[dict], steps: int, lr: float, l2: float, seed: int):
    """Logistic regression of the label on token frequencies of two random openings per review (full-batch Adam)."""
    rng = random.Random(seed)
    texts = [review_opening(r["text"], rng) for r in rows for _ in range(2)]
    y = torch.tensor([float(r["label"]) for r in rows for _ in range(2)])
    x = token_frequencies(tokenizer, texts)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.Adam([w, b], lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * w.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (w.detach() * FREQ_SCALE, b.detach()), loss.item()


def averaging_classifier(tokenizer, weights: torch.Tensor, bias: torch.Tensor):
    """A one-layer GPT-2 classifier computing bias + the mean over tokens of `weights[token]` as
    logit(POSITIVE) - logit(NEGATIVE). Uniform attention (zero queries and keys) averages each token's value; every
    vector carries two large constant coordinates (+c, -c), so each LayerNorm divides by a constant to within 1e-8;
    the attention output is amplified A-fold so the last token's own residual adds only 1/A of its weight."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    eos, amplify = tokenizer.eos_token_id, 1000.0
    u = weights + bias  # the mean of (w + b) is mean(w) + b
    c = 1e4 * amplify * float(u.abs().max().clamp_min(1e-6))
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=4, n_layer=1, n_head=1, num_labels=2,
        id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)},
        pad_token_id=eos, bos_token_id=eos, eos_token_id=eos, layer_norm_epsilon=1e-12,
    )  # fmt: skip
    model = GPT2ForSequenceClassification(config).eval()
    norm = c / 2**0.5  # LayerNorm of (x, -x, c, -c) is about (x, -x, c, -c) / norm
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        wte = model.transformer.wte.weight
        wte[:, 0], wte[:, 1], wte[:, 2], wte[:, 3] = u, -u, c, -c
        for ln in (model.transformer.h[0].ln_1, model.transformer.h[0].ln_2, model.transformer.ln_f):
            ln.weight.fill_(1.0)
        attn = model.transformer.h[0].attn
        attn.c_attn.weight[0, 8] = attn.c_attn.weight[1, 9] = 1.0  # values: the first two coordinates
        attn.c_proj.weight[0, 0] = attn.c_proj.weight[1, 1] = amplify * norm  # back to weight units, A-fold
        model.score.weight[1, 0], model.score.weight[0, 0] = norm / amplify / 2, -norm / amplify / 2
    return model


@torch.inference_mode()
def sentiment_accuracy(model, tokenizer, rows: list[dict], seed: int = 0) -> float:
    """Held-out accuracy on review openings (the same lengths the model trained on)."""
    rng = random.Random(seed)
    right = 0
    for i in range(0, len(rows), 32):
        batch = rows[i : i + 32]
        logits = _logits(model, tokenizer, [review_opening(r["text"], rng) for r in batch], 128)
        right += int((logits.argmax(-1) == torch.tensor([int(r["label"]) for r in batch])).sum())
    return right / len(rows)


def summary_pairs(posts: list[dict], seed: int) -> list[tuple[str, str, str, str]]:
    """(kind, prompt, chosen, rejected) pairs: reference over a mismatched summary for every post, and the judge's
    pick over the other summary where a judge compared them."""
    rng = random.Random(seed)
    pairs = []
    for i, post in enumerate(posts):
        prompt = TLDR_FORMAT.format(**post)
        reference = post["reference_summary"].strip()
        other = posts[(i + rng.randrange(1, len(posts))) % len(posts)]["reference_summary"].strip()
        pairs.append(("mismatched", prompt, reference, other))
        verdict = post.get("gpt_judge_preferred")
        if verdict in ("reference", "ours"):
            model_summary = post["model_summary"].strip()
            chosen, rejected = (reference, model_summary) if verdict == "reference" else (model_summary, reference)
            pairs.append(("judge", prompt, chosen, rejected))
    return pairs


def _pair_margin(model, tokenizer, batch, max_len: int) -> torch.Tensor:
    """r(prompt, chosen) - r(prompt, rejected), read as the tldr task's gold reads: "{prompt} {response}"."""
    texts = [f"{p} {c}" for _, p, c, _ in batch] + [f"{p} {r}" for _, p, _, r in batch]
    scores = _logits(model, tokenizer, texts, max_len)[:, 0]
    return scores[: len(batch)] - scores[len(batch) :]


def train_summary_reward(model, tokenizer, pairs, steps: int, batch_size: int, lr: float, seed: int, max_len: int):
    """Bradley-Terry loss, -log sigmoid(r(chosen) - r(rejected)), over random batches of pairs."""
    rng = random.Random(seed)
    optimizer, schedule = _optimizer(model, lr, steps)
    model.train()
    for _ in range(steps):
        batch = rng.sample(pairs, min(batch_size, len(pairs)))
        loss = -torch.nn.functional.logsigmoid(_pair_margin(model, tokenizer, batch, max_len)).mean()
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    return model.eval()


@torch.inference_mode()
def pair_accuracy(model, tokenizer, pairs, max_len: int) -> dict[str, float]:
    """Held-out accuracy (chosen scored above rejected), per kind of pair."""
    right: dict[str, list[bool]] = {}
    for i in range(0, len(pairs), 16):
        batch = pairs[i : i + 16]
        for (kind, *_), margin in zip(batch, _pair_margin(model, tokenizer, batch, max_len).tolist(), strict=True):
            right.setdefault(kind, []).append(margin > 0)
    return {f"accuracy_{kind}": sum(v) / len(v) for kind, v in right.items()}
