"""The guide: a tuned/untuned model pair whose log-probability ratio is the implicit reward that steers the search.

reward(y | x) = beta * (log p_tuned(y | x) - log p_untuned(y | x)), a sum over tokens, so it is kept per hypothesis
and extended as chunks arrive. A finished response also scores the guide's EOS token, as in the paper's code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.backends.hf import HFModel, KVRows, left_pad
from harness.errors import require
from harness.types import Template

LOGITS_BUDGET = 2**26  # floats of logits materialised at once when scoring a long block (256 MB in float32)


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


@dataclass
class Step:
    """What one guide operation did, per row: tokens read (tuned and untuned together) and forward passes made."""

    tokens: list[int]
    passes: int


class _Stream:
    """log p(response | prompt) under one model for a batch of rows, reading each token exactly once.

    The cache holds every token but the newest, which is held back: the next forward pass starts with it, so its
    logits score the first new token, and no next-token distribution has to be stored or reordered.
    """

    def __init__(self, lm: HFModel, template: Template, prompts: Sequence[str], new_tokens: int):
        self.lm = lm
        self.prompt_text = [template.render(lm.tokenizer, p) for p in prompts]
        self.special = not template.chat
        self.prompt_ids = [lm.encode_prompt(template, p, new_tokens) for p in prompts]
        self.kv = KVRows(lm)
        ids, valid = left_pad([p[:-1] for p in self.prompt_ids], lm.pad_id, lm.device)
        self.kv.extend(ids, valid)
        self.last = [p[-1] for p in self.prompt_ids]
        self.logp = [0.0] * len(prompts)
        self.step = Step([len(p) - 1 for p in self.prompt_ids], 1 if ids.shape[1] else 0)
        vocab = getattr(lm.model.config, "vocab_size", None) or len(lm.tokenizer)
        self.block_budget = max(1, LOGITS_BUDGET // vocab)

    def _read(self, new: list[list[int]]) -> list[list[float]]:
        """Feed each row its held-back token and all new ones but the last; return the new tokens' log-probs."""
        n = max(map(len, new), default=0)
        self.step = Step([len(x) for x in new], 0)
        if n == 0:
            return [[] for _ in new]
        pad = self.lm.pad_id
        feed = [([self.last[r], *x[:-1]] if x else []) + [pad] * (n - len(x)) for r, x in enumerate(new)]
        target = [x + [0] * (n - len(x)) for x in new]
        valid = [[1] * len(x) + [0] * (n - len(x)) for x in new]
        device = self.lm.device
        feed_t, target_t, valid_t = (torch.tensor(v, device=device) for v in (feed, target, valid))
        width = max(1, self.block_budget // len(new))  # columns per forward pass, bounding logits memory
        pieces = []
        for a in range(0, n, width):
            logits = self.kv.extend(feed_t[:, a : a + width], valid_t[:, a : a + width], keep=0)
            targets = target_t[:, a : a + width]
            nll = torch.nn.functional.cross_entropy(  # fused log-softmax + pick: the fastest route on CPU
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
            )
            pieces.append(-nll.view(targets.shape))
            self.step.passes += 1
        logps = torch.cat(pieces, 1).double().mul_(valid_t).tolist()
        for r, x in enumerate(new):
            if x:
                self.last[r] = x[-1]
        return [row[: len(x)] for row, x in zip(logps, new, strict=True)]

    def select(self, index: list[int]) -> None:
        self.kv.select(torch.tensor(index, dtype=torch.long))
        for name in self._row_lists:
            rows = getattr(self, name)
            setattr(self, name, [_copy(rows[i]) for i in index])

    _row_lists: tuple[str, ...] = ("prompt_text", "prompt_ids", "last", "logp")


def _copy(x):
    return list(x) if isinstance(x, list) else x


class _AlignedStream(_Stream):
    """The guide shares the strong model's vocabulary: the strong model's tokens are scored as they are."""

    _row_lists = (*_Stream._row_lists, "seen")

    def __init__(self, lm: HFModel, template: Template, prompts: Sequence[str], strong: HFModel, new_tokens: int):
        super().__init__(lm, template, prompts, new_tokens)
        self.strong_eos = strong.eos_ids
        self.seen = [0] * len(prompts)

    def update(self, responses: Sequence[list[int]], finished: Sequence[bool]) -> None:
        new = []
        for r, (tokens, done) in enumerate(zip(responses, finished, strict=True)):
            x = tokens[self.seen[r] :]
            self.seen[r] = len(tokens)
            if done:  # score the guide's own EOS in place of however the strong model ended
                x = x[:-1] if x and x[-1] in self.strong_eos else x
                x = [*x, self.lm.eos_id] if self.lm.eos_id is not None else x
            new.append(x)
        for r, lp in enumerate(self._read(new)):
            self.logp[r] += math.fsum(lp)


class _RetokenizedStream(_Stream):
    """The guide has its own tokenizer: the response text is re-tokenised and only the tokens that changed are read.

    Appending text can re-split the last few tokens. Those are rewound per row (masked out of the cache, their
    log-probs dropped) and read again, so the score always equals a full re-score of prompt + response.
    """

    _row_lists = (*_Stream._row_lists, "ids", "cols", "lps")

    def __init__(self, lm: HFModel, template: Template, prompts: Sequence[str], new_tokens: int):
        super().__init__(lm, template, prompts, new_tokens)
        self.ids = [list(p) for p in self.prompt_ids]  # tokens read so far, the held-back last one included
        width = self.kv.mask.shape[1]
        self.cols = [list(range(width - len(p) + 1, width)) for p in self.prompt_ids]  # cache column of each but last
        self.lps: list[list[float | None]] = [[None] * len(p) for p in self.prompt_ids]  # log-prob of each token

    def update(self, texts: Sequence[str], finished: Sequence[bool]) -> None:
        new = []
        for r, (text, done) in enumerate(zip(texts, finished, strict=True)):
            full = self.lm.tokenizer(self.prompt_text[r] + text, add_special_tokens=self.special)["input_ids"]
            target = full + ([self.lm.eos_id] if done and self.lm.eos_id is not None else [])
            keep = common_prefix(self.ids[r], target)
            if keep < len(self.ids[r]):  # rewind: forget what re-tokenisation changed, hold back the token before
                keep = max(keep, 1)
                self.kv.forget(r, self.cols[r][keep - 1 :])
                del self.cols[r][keep - 1 :]
                self.ids[r] = target[:keep]
                del self.lps[r][keep:]
                self.last[r] = target[keep - 1]
            new.append(target[len(self.ids[r]) :])
        width = self.kv.mask.shape[1]
        for r, lp in enumerate(self._read(new)):
            self.cols[r].extend(range(width, width + len(lp)))
            self.ids[r].extend(new[r])
            self.lps[r].extend(lp)
            start = common_prefix(self.prompt_ids[r], self.ids[r])  # the response may have merged into the prompt
            self.logp[r] = math.fsum(self.lps[r][start:])


class Guide:
    """A tuned/untuned model pair with its own prompt template (it may differ from the strong model's).

    With a shared vocabulary the search scores the very tokens the strong model sampled. `retokenize=True` scores
    the re-tokenised response text instead, as the paper's code does; the two differ only for samples that are not
    in their canonical tokenization.
    """

    def __init__(
        self,
        tuned: HFModel,
        untuned: HFModel,
        beta: float = 1.0,
        template: Template | None = None,
        retokenize: bool = False,
    ):
        require(beta > 0, f"guide beta must be > 0, got {beta}")
        self.tuned, self.untuned, self.beta, self.retokenize = tuned, untuned, beta, retokenize
        self.template = template or Template()

    def start(self, strong: HFModel | None, prompts: Sequence[str], new_tokens: int = 0) -> GuideState:
        """Read the prompts (one row each) and return a state whose rows follow the strong model's hypotheses.

        `new_tokens` is the response budget, checked against the guide's context window. Without a strong model
        the state takes response text (`update_text`)."""
        return GuideState(self, strong, prompts, new_tokens)

    def score(
        self, strong: HFModel, prompts: Sequence[str], responses: Sequence[list[int]], finished: Sequence[bool]
    ) -> list[float]:
        """Implicit reward of complete or partial responses (strong-model token ids), one per prompt."""
        state = self.start(strong, prompts, max(map(len, responses), default=0))
        state.update(responses, finished)
        return state.rewards()

    def score_text(self, prompts: Sequence[str], responses: Sequence[str], finished: Sequence[bool]) -> list[float]:
        """Implicit reward of response texts, whoever wrote them, one per prompt."""
        length = max((len(self.tuned.tokenizer(r)["input_ids"]) for r in responses), default=0)
        state = self.start(None, prompts, length + 1)
        state.update_text(responses, finished)
        return state.rewards()


class GuideState:
    """Incremental implicit reward of rows of hypotheses: `update` reads only new tokens, `select` follows beams."""

    def __init__(self, guide: Guide, strong: HFModel | None, prompts: Sequence[str], new_tokens: int):
        self.beta, self.strong = guide.beta, strong
        self.streams: list[_AlignedStream | _RetokenizedStream] = [
            _AlignedStream(lm, guide.template, prompts, strong, new_tokens)
            if strong is not None and not guide.retokenize and lm.same_vocab(strong)
            else _RetokenizedStream(lm, guide.template, prompts, new_tokens)
            for lm in (guide.tuned, guide.untuned)
        ]

    def update(self, responses: Sequence[list[int]], finished: Sequence[bool]) -> None:
        """Responses so far, one per row (strong-model token ids); `finished` rows also score the guide's EOS."""
        texts = None
        for stream in self.streams:
            if isinstance(stream, _AlignedStream):
                stream.update(responses, finished)
            else:
                texts = texts or [self.strong.decode(r) for r in responses]
                stream.update(texts, finished)

    def update_text(self, texts: Sequence[str], finished: Sequence[bool]) -> None:
        """Responses so far as text (a state started without a strong model)."""
        for stream in self.streams:
            stream.update(texts, finished)

    def rewards(self) -> list[float]:
        tuned, untuned = self.streams
        return [self.beta * (t - u) for t, u in zip(tuned.logp, untuned.logp, strict=True)]

    def last_step(self) -> Step:
        """Tokens read per row and forward passes made by the latest prefill or update, both models together."""
        a, b = (s.step for s in self.streams)
        return Step([x + y for x, y in zip(a.tokens, b.tokens, strict=True)], a.passes + b.passes)

    def select(self, index: list[int]) -> None:
        for stream in self.streams:
            stream.select(index)
