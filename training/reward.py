"""Gold reward models on real labels, each a regression written exactly into a small GPT-2 sequence classifier, so
the harness loads it like any gold model (a small transformer fine-tuned on these labels learns far slower on a CPU:
about 65% held-out accuracy on IMDB after minutes, and chance on TL;DR pairs after 150 steps from the 2-layer guide):

- IMDB sentiment: a logistic regression on token frequencies, fitted to the NEGATIVE/POSITIVE labels of review
  openings (as long as a prompt plus a 50-token response), written into a one-layer GPT-2 classifier whose
  attention averages over the tokens, so logit(POSITIVE) - logit(NEGATIVE) is the regression's logit;
- TL;DR: a scalar reward, the sum over the summary's tokens of one weight per token when the token also occurs in
  the post and another when it does not, fitted by the Bradley-Terry loss on summary pairs of Reddit posts: the
  human reference over the reference of another post (mismatched), and, where a judge compared them, the judge's
  pick over the other of (human reference, a 1.3B PPO policy's summary); written into a three-layer GPT-2 classifier
  whose attention finds where the summary starts and which of its tokens occur in the post.

Both report held-out accuracy on rows they never trained on.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import torch

from training.pretrain import TLDR_FORMAT

LABELS = ["NEGATIVE", "POSITIVE"]
FREQ_SCALE = 30.0


def review_opening(text: str, rng: random.Random, lo: int = 8, hi: int = 60) -> str:
    """The first n words of a review, n uniform in [lo, hi]: what the gold model reads (prompt + response)."""
    words = text.replace("<br />", " ").split()
    return " ".join(words[: rng.randint(lo, hi)])


def _logits(model, tokenizer, texts: list[str], max_len: int) -> torch.Tensor:
    tokenizer.truncation_side = "left"  # as the harness's RewardModel reads: a long input keeps its end
    inputs = tokenizer(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.device.type == "cpu"):
        return model(**inputs).logits.float()


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


def pair_text(prompt: str, response: str) -> str:
    """A (post, summary) as the tldr task's gold reads it: gold_template "{prompt} {response}"."""
    return f"{prompt} {response}"


def summary_marker(tokenizer, prompts: list[str]) -> int:
    """The token of the prompt's closing "TL;DR:" that is rarest in `prompts`: where the summary starts."""
    tail = tokenizer(TLDR_FORMAT.rsplit("\n", 1)[1])["input_ids"]
    counts = Counter(t for ids in tokenizer(prompts)["input_ids"] for t in ids if t in tail)
    return min(tail, key=lambda t: counts[t])


def overlap_counts(tokenizer, marker: int, texts: list[str]) -> torch.Tensor:
    """Per text, its response tokens (after the first `marker`, markers excluded) counted at [token] when the token
    occurs before the marker (in the post) and at [vocab + token] when not; zeros for a text without the marker."""
    vocab = len(tokenizer)
    x = torch.zeros(len(texts), 2 * vocab)
    for i, ids in enumerate(tokenizer(texts)["input_ids"]):
        if marker not in ids:
            continue
        first = ids.index(marker)
        post = set(ids[:first])
        index = [t if t in post else vocab + t for t in ids[first + 1 :] if t != marker]
        x[i].index_add_(0, torch.tensor(index, dtype=torch.long), torch.ones(len(index)))
    return x


def post_idf(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Inverse document frequency of each token over the posts, log(posts / (1 + posts containing it)): near 0 for
    words every post has ("I", "the"), large for the words that say what a post is about."""
    df = torch.zeros(len(tokenizer))
    for ids in tokenizer(prompts)["input_ids"]:
        df[list(set(ids))] += 1
    return torch.log(len(prompts) / (1 + df))


def fit_summary_reward(tokenizer, marker: int, pairs, steps: int, lr: float, l2: float):
    """Bradley-Terry regression on overlap counts: reward = sum over response tokens of matched[token] if it occurs
    in the post, else unmatched[token]. Each weight is a shared part a + b * idf(token) (unpenalised, so a common
    word that the post contains earns less than a rare one) plus a per-token part (L2), which a token seen rarely
    leaves near 0. Full-batch Adam; returns (matched, unmatched), final loss."""
    vocab = len(tokenizer)
    chosen = overlap_counts(tokenizer, marker, [pair_text(p, c) for _, p, c, _ in pairs])
    diff = chosen - overlap_counts(tokenizer, marker, [pair_text(p, r) for _, p, _, r in pairs])
    basis = torch.stack([torch.ones(vocab), post_idf(tokenizer, sorted({p for _, p, _, _ in pairs}))], 1)
    shared_diff = torch.cat([diff[:, :vocab] @ basis, diff[:, vocab:] @ basis], 1)
    w = torch.zeros(2 * vocab, requires_grad=True)
    shared = torch.zeros(4, requires_grad=True)
    optimizer = torch.optim.Adam([w, shared], lr=lr)
    for _ in range(steps):
        margin = diff @ w + shared_diff @ shared
        loss = -torch.nn.functional.logsigmoid(margin).mean() + l2 * w.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    w, shared = w.detach(), shared.detach()
    return (w[:vocab] + basis @ shared[:2], w[vocab:] + basis @ shared[2:]), loss.item()


CODE_DIM = 64  # random +-1 token codes: distinct tokens' codes have dot products of about 0 +- 0.13, a token's own 1


def overlap_classifier(tokenizer, marker: int, matched: torch.Tensor, unmatched: torch.Tensor, seed: int = 0):
    """A three-layer GPT-2 classifier whose scalar output is the overlap reward of `fit_summary_reward`.

    Layer 1 attends to marker tokens: "has the summary started". Layer 2 attends from each token to the same token
    (random codes, dot product 1) with a bonus for positions before the marker: "does it occur in the post"; its
    ReLU MLP turns that into the token's matched or unmatched weight for summary tokens, exactly 0 elsewhere.
    Layer 3 attends e^18-fold to the first position (a post token, weight 0), so the other tokens' weights add up,
    scaled by e^-18, then amplified back (to within 1e-4 relative up to the 1,024-token context). Every vector
    carries constants (+c, -c) that fix each LayerNorm's divisor, and every coordinate a mirror (-x) read by
    difference, which cancels LayerNorm's rounding of the mean."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    vocab, eos, code = len(tokenizer), tokenizer.eos_token_id, CODE_DIM
    flag, seen, match, w_match, w_miss, part, total, const, start = range(code, code + 9)  # slots after the codes
    n = code + 9
    dim, c = 2 * n, 1e4  # slot i + n holds -(slot i)
    norm = c * (2 / dim) ** 0.5  # LayerNorm of such a vector is the vector / norm, to within 1e-7
    beta, bonus, sharp, sum_k, big = 200.0, 30.0, 30.0, 18.0, 3.0
    scale = float(torch.cat([matched, unmatched]).abs().max().clamp_min(1e-6))  # weights stored as w / scale
    shrink = 0.01  # the sum stored as shrink * sum / scale: small beside c
    config = GPT2Config(
        vocab_size=vocab, n_positions=1024, n_embd=dim, n_layer=3, n_head=1, n_inner=4, activation_function="relu",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, scale_attn_weights=False, layer_norm_epsilon=1e-12,
        num_labels=1, id2label={0: "score"}, label2id={"score": 0},
        pad_token_id=eos, bos_token_id=eos, eos_token_id=eos,
    )  # fmt: skip
    model = GPT2ForSequenceClassification(config).eval()

    def read(weight, slot: int, col: int, value: float) -> None:
        """Output `col` of a layer reading a LayerNorm gains value * (the residual's `slot`), as a mirror difference."""
        weight[slot, col] += value * norm / 2
        weight[slot + n, col] -= value * norm / 2

    def write(weight, row: int, slot: int, value: float) -> None:
        """The residual's `slot` (and its mirror) gains value * input `row` of a layer writing the residual."""
        weight[row, slot], weight[row, slot + n] = value, -value

    codes = (torch.randint(0, 2, (vocab, code), generator=torch.Generator().manual_seed(seed)) * 2.0 - 1) / code**0.5
    blocks = model.transformer.h
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in [model.transformer.ln_f, *(m for b in blocks for m in (b.ln_1, b.ln_2))]:
            ln.weight.fill_(1.0)
        wte = model.transformer.wte.weight
        for slot, values in [*enumerate(codes.T), (const, c), (w_match, matched / scale), (w_miss, unmatched / scale)]:
            wte[:, slot], wte[:, slot + n] = values, -values
        wte[marker, flag], wte[marker, flag + n] = 1.0, -1.0
        wpe = model.transformer.wpe.weight
        wpe[0, start], wpe[0, start + n] = 1.0, -1.0

        first, second, third = (b.attn.c_attn.weight for b in blocks)  # output columns: query, key, value
        read(first, const, 0, 1 / c)  # query 1, key sharp * [marker], value [marker]: seen = "a marker at or before"
        read(first, flag, dim, sharp)
        read(first, flag, 2 * dim, 1.0)
        write(blocks[0].attn.c_proj.weight, 0, seen, 1.0)

        for i in range(code):  # score beta * code . code + bonus * (1 - seen), value 1 - seen: match = "in the post"
            read(second, i, i, beta)
            read(second, i, dim + i, 1.0)
        read(second, const, code, 1 / c)
        read(second, const, dim + code, bonus / c)
        read(second, seen, dim + code, -bonus)
        read(second, const, 2 * dim, 1 / c)
        read(second, seen, 2 * dim, -1.0)
        write(blocks[1].attn.c_proj.weight, 0, match, 1.0)

        # part = w_match for a summary token in the post, w_miss for one not in it, exactly 0 elsewhere: units
        # relu(+-w + big * (cond - 1)) give +-w where cond is 1 and 0 where cond <= 0 (|w| <= 1 < big)
        conditions = [(w_match, {match: 1, seen: 1, flag: -1}, -2.0), (w_miss, {seen: 1, flag: -1, match: -1}, -1.0)]
        for unit, (weight, cond, offset) in enumerate(u for u in conditions for _ in (0, 1)):
            sign = 1.0 if unit % 2 == 0 else -1.0
            read(blocks[1].mlp.c_fc.weight, weight, unit, sign)
            for slot, k in cond.items():
                read(blocks[1].mlp.c_fc.weight, slot, unit, big * k)
            blocks[1].mlp.c_fc.bias[unit] = big * offset
            write(blocks[1].mlp.c_proj.weight, unit, part, sign)

        read(third, const, 0, 1 / c)  # query 1, key sum_k * [first position], value part: the parts' sum * e^-sum_k
        read(third, start, dim, sum_k)
        read(third, part, 2 * dim, 1.0)
        write(blocks[2].attn.c_proj.weight, 0, total, shrink * math.exp(sum_k))
        read(model.score.weight.T, total, 0, scale / shrink)
    return model


@torch.inference_mode()
def reward_scores(model, tokenizer, texts: list[str], batch_size: int = 16) -> torch.Tensor:
    """Scalar rewards of texts, read as the harness's RewardModel reads them (float32, an over-long text keeping
    its end)."""
    tokenizer.truncation_side = "left"
    scores = []
    for i in range(0, len(texts), batch_size):
        inputs = tokenizer(
            texts[i : i + batch_size], padding=True, truncation=True, max_length=model.config.n_positions,
            return_tensors="pt",
        )  # fmt: skip
        scores.append(model(**inputs).logits.float()[:, 0])
    return torch.cat(scores)


def pair_accuracy(model, tokenizer, pairs) -> dict[str, float]:
    """Held-out accuracy (chosen scored above rejected), per kind of pair."""
    chosen = reward_scores(model, tokenizer, [pair_text(p, c) for _, p, c, _ in pairs])
    rejected = reward_scores(model, tokenizer, [pair_text(p, r) for _, p, _, r in pairs])
    right: dict[str, list[bool]] = {}
    for (kind, *_), margin in zip(pairs, (chosen - rejected).tolist(), strict=True):
        right.setdefault(kind, []).append(margin > 0)
    return {f"accuracy_{kind}": sum(v) / len(v) for kind, v in right.items()}
