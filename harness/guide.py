"""The guide: a tuned/untuned model pair whose log-probability ratio is the implicit reward that steers the search.

reward(y | x) = beta * (log p_tuned(y | x) - log p_untuned(y | x)), a sum over tokens, so it is kept per hypothesis
and extended as chunks arrive. A finished response also scores the guide's EOS token, as in the paper's code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from harness.backends.hf import HFModel, KVRows, common_prefix, left_pad
from harness.errors import UsageError, require
from harness.types import Template

LOGITS_BUDGET = 2**26  # floats of logits materialised at once when scoring a long block (256 MB in float32)


@dataclass
class Step:
    """What one guide operation did, per row: tokens read (tuned and untuned together) and forward passes made."""

    tokens: list[int]
    passes: int


@dataclass
class _Row:
    """One row of a stream: the guide tokens it has read, where they sit in the cache, and their log-probs.

    The newest token `ids[-1]` is held back, out of the cache: the next forward pass starts with it, so its logits
    score the first new token. `cols[i]` is the cache column of `ids[i]` for every token but that one. `lps[i]` is
    log p(ids[i] | ids[:i]), or None for a prompt token (never scored) and for the first token (nothing precedes it).
    Every change goes through `read` or `rewind`, which check these invariants.
    """

    prompt: list[int]  # the rendered prompt's tokens
    prompt_text: str
    ids: list[int]
    cols: list[int]
    lps: list[float | None]

    @classmethod
    def prefilled(cls, prompt: list[int], prompt_text: str, first_col: int) -> _Row:
        """A row whose prompt, all but its last token, sits in the cache from column `first_col` on."""
        row = cls(
            prompt, prompt_text, list(prompt), list(range(first_col, first_col + len(prompt) - 1)), [None] * len(prompt)
        )
        row._check()
        return row

    def _check(self) -> None:
        """Aligned lists, the first token unscored, and every token past the prompt read (re-tokenising can make a
        prompt token a response token, never the other way round)."""
        assert len(self.cols) == len(self.ids) - 1 and len(self.lps) == len(self.ids) >= 1, "row lists out of step"
        assert self.lps[0] is None, "the first token has nothing before it to score it"
        assert None not in self.lps[self.response_start() :], "a response token was never read"

    def response_start(self) -> int:
        """Where the response begins in `ids`: past the prompt tokens it shares, and never at the first token."""
        return max(common_prefix(self.prompt, self.ids), 1)

    def logp(self) -> float:
        """log p(response | prompt): the tokens past the prompt. Re-tokenising may merge the response into the prompt's
        last tokens, even its only one; the first token is never scored, as in the paper's scorer."""
        return math.fsum(self.lps[self.response_start() :])

    def read(self, tokens: list[int], lps: list[float], first_col: int) -> None:
        """Append `tokens` and their log-probs; the held-back token and all new ones but the last took the cache
        columns from `first_col` on, past every column the row holds (the cache grows in reading order)."""
        assert not self.cols or first_col > self.cols[-1], "cache columns out of order"
        self.cols.extend(range(first_col, first_col + len(tokens)))
        self.ids.extend(tokens)
        self.lps.extend(lps)
        self._check()

    def rewind(self, sequence: list[int]) -> list[int]:
        """Keep only the tokens shared with `sequence`, the last of them held back; returns the cache columns to mask.

        When even the first token changed, the sequence's first token takes its place: it is never scored anyway."""
        keep = max(common_prefix(self.ids, sequence), 1)
        forgotten = self.cols[keep - 1 :]
        self.ids[:] = sequence[:keep]
        del self.cols[keep - 1 :], self.lps[keep:]
        return forgotten

    def copy(self) -> _Row:
        return _Row(self.prompt, self.prompt_text, list(self.ids), list(self.cols), list(self.lps))


class _Stream:
    """log p(response | prompt) under one model for a batch of rows, reading each token exactly once.

    Each update names every row's whole token sequence (prompt, response, and the guide's EOS once it has ended). What
    a row has read and the new sequence share a prefix; the rest is rewound (masked out of the cache, log-probs
    dropped) and only the new tokens are read, so the reward always equals a full re-score of the sequence.
    """

    def __init__(self, lm: HFModel, template: Template, prompts: Sequence[str], new_tokens: int):
        self.lm, self.template = lm, template
        prompt_ids = [lm.encode_prompt(template, p, new_tokens) for p in prompts]
        self.kv = KVRows(lm)
        ids, valid = left_pad([p[:-1] for p in prompt_ids], lm.pad_id, lm.device)
        self.kv.extend(ids, valid)
        width = self.kv.mask.shape[1]
        self.rows = [
            _Row.prefilled(p, template.render(lm.tokenizer, text), width - len(p) + 1)
            for p, text in zip(prompt_ids, prompts, strict=True)
        ]
        self.step = Step([len(p) - 1 for p in prompt_ids], 1 if ids.shape[1] else 0)
        vocab = getattr(lm.model.config, "vocab_size", None) or len(lm.tokenizer)
        self.block_budget = max(1, LOGITS_BUDGET // vocab)

    @property
    def logp(self) -> list[float]:
        return [row.logp() for row in self.rows]

    def update(self, sequences: Sequence[list[int]]) -> None:
        """Bring every row to its whole token sequence (`sequences[r]`), reading only what it has not read."""
        limit = self.lm.max_positions
        for r, (row, sequence) in enumerate(zip(self.rows, sequences, strict=True)):
            if limit is not None and len(sequence) > limit:  # counted in the guide's own tokens, EOS included
                raise UsageError(
                    f"the guide model {self.lm.name} would read {len(sequence)} tokens (prompt, response and EOS), "
                    f"more than its {limit}-token context, for the prompt {row.prompt_text[:40]!r}; lower "
                    "max_new_tokens or shorten the task's prompts"
                )
            if sequence[: len(row.ids)] != row.ids:
                self.kv.forget(r, row.rewind(sequence))
        new = [sequence[len(row.ids) :] for row, sequence in zip(self.rows, sequences, strict=True)]
        width = self.kv.mask.shape[1]
        for row, tokens, lps in zip(self.rows, new, self._read(new), strict=True):
            row.read(tokens, lps, width)

    def _read(self, new: list[list[int]]) -> list[list[float]]:
        """Feed each row its held-back token and all new ones but the last; return the new tokens' log-probs."""
        n = max(map(len, new), default=0)
        self.step = Step([len(x) for x in new], 0)
        if n == 0:
            return [[] for _ in new]
        pad = self.lm.pad_id
        held = [row.ids[-1] for row in self.rows]
        feed = [([h, *x[:-1]] if x else []) + [pad] * (n - len(x)) for h, x in zip(held, new, strict=True)]
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
        return [row[: len(x)] for row, x in zip(logps, new, strict=True)]

    def select(self, index: list[int]) -> None:
        self.kv.select(torch.tensor(index, dtype=torch.long))
        self.rows = [self.rows[i].copy() for i in index]

    def eos(self, finished: bool) -> list[int]:
        """The guide's EOS after a finished response, nothing after an open one."""
        return [self.lm.eos_id] if finished and self.lm.eos_id is not None else []


class _AlignedStream(_Stream):
    """The guide shares the strong model's vocabulary: the strong model's tokens are scored as they are."""

    def __init__(self, lm: HFModel, template: Template, prompts: Sequence[str], strong: HFModel, new_tokens: int):
        super().__init__(lm, template, prompts, new_tokens)
        self.strong_eos = strong.eos_ids

    def sequence(self, row: _Row, tokens: list[int], text: str | None, finished: bool) -> list[int]:
        if finished and tokens and tokens[-1] in self.strong_eos:  # the guide's own EOS replaces the strong model's
            tokens = tokens[:-1]
        return row.prompt + tokens + self.eos(finished)


class _RetokenizedStream(_Stream):
    """The guide has its own tokenizer: prompt + response text is re-tokenised as a whole, as the paper's code does.

    Appending text can re-split the last few tokens (or merge the response into the prompt); those are rewound."""

    def sequence(self, row: _Row, tokens: list[int] | None, text: str, finished: bool) -> list[int]:
        add = self.template.adds_special_tokens
        return self.lm.tokenizer(row.prompt_text + text, add_special_tokens=add)["input_ids"] + self.eos(finished)


class Guide:
    """A tuned/untuned model pair with its own prompt template (it may differ from the strong model's).

    With a shared vocabulary the search scores the very tokens the strong model sampled. `retokenize=True` scores
    the re-tokenised response text instead, as the paper's code does; the two differ only for samples that are not
    in their canonical tokenization. `eos_at_budget=True` scores a response cut by the token budget as finished (the
    guide's EOS appended), as the paper's code does; by default only a response that ended (EOS, stop) scores EOS.
    """

    def __init__(
        self,
        tuned: HFModel,
        untuned: HFModel,
        beta: float = 1.0,
        template: Template | None = None,
        retokenize: bool = False,
        eos_at_budget: bool = False,
    ):
        require(beta > 0, f"guide beta must be > 0, got {beta}")
        self.tuned, self.untuned, self.beta, self.retokenize = tuned, untuned, beta, retokenize
        self.eos_at_budget = eos_at_budget
        self.template = template or Template()

    def start(self, strong: HFModel | None, prompts: Sequence[str], new_tokens: int = 0) -> GuideState:
        """Read the prompts (one row each) and return a state whose rows follow the strong model's hypotheses.

        `new_tokens` is the response budget in strong tokens, checked up front against the guide's context window
        (the guide's own count is checked at every update). Without a strong model the state reads text only."""
        return GuideState(self, strong, prompts, new_tokens)

    def scores_eos(self, ended: bool, budget_spent: bool) -> bool:
        """Whether a response's reward includes the guide's EOS: it ended (EOS or a stop string), or its budget is
        spent and `eos_at_budget` treats that as an end."""
        return ended or (budget_spent and self.eos_at_budget)

    def score_text(self, prompts: Sequence[str], responses: Sequence[str], finished: Sequence[bool]) -> list[float]:
        """Implicit reward of response texts, whoever wrote them, one per prompt."""
        state = self.start(None, prompts)
        state.update(None, responses, finished)
        return state.rewards()


class GuideState:
    """Incremental implicit reward of rows of hypotheses: `update` reads only new tokens, `select` follows beams."""

    def __init__(self, guide: Guide, strong: HFModel | None, prompts: Sequence[str], new_tokens: int):
        self.beta = guide.beta
        budget = new_tokens + 1  # the response and the guide's EOS
        self.streams: list[_AlignedStream | _RetokenizedStream] = [
            _AlignedStream(lm, guide.template, prompts, strong, budget)
            if strong is not None and not guide.retokenize and lm.same_vocab(strong)
            else _RetokenizedStream(lm, guide.template, prompts, budget)
            for lm in (guide.tuned, guide.untuned)
        ]

    @property
    def needs_text(self) -> bool:
        """Whether `update` needs the responses' text (a stream re-tokenises), not only their strong tokens."""
        return any(isinstance(s, _RetokenizedStream) for s in self.streams)

    def update(self, tokens: Sequence[list[int]] | None, texts: Sequence[str] | None, finished: Sequence[bool]) -> None:
        """Responses so far, one per row: strong-model token ids (for a guide sharing the strong vocabulary) and text
        (for one that re-tokenises; None unless `needs_text`); `finished` rows also score the guide's EOS."""
        tokens = tokens if tokens is not None else [None] * len(finished)
        texts = texts if texts is not None else [None] * len(finished)
        for stream in self.streams:
            rows = zip(stream.rows, tokens, texts, finished, strict=True)
            stream.update([stream.sequence(row, t, text, done) for row, t, text, done in rows])

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
