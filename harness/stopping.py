"""When a response ends (an EOS token or a stop string) and what its text is."""

from __future__ import annotations

from collections.abc import Sequence

from harness.backends.hf import HFModel

EOS, STOP, LENGTH = "eos", "stop", "length"


class Stopper:
    """Checks each newly sampled token for EOS or a completed stop string, and gives a response's text.

    A response's text is what follows its prompt (`prompts[p]`, token ids) in the decoded prompt + response, so it
    keeps the leading space a SentencePiece decoder drops from text decoded alone. Stop strings are found by decoding
    only a window of recent tokens, wide enough to hold any of them, so the check costs the same at token 10 and at
    token 2,000.
    """

    def __init__(self, lm: HFModel, stop: Sequence[str], prompts: Sequence[list[int]]):
        self.lm, self.stop, self.prompts = lm, tuple(stop), prompts
        # every token decodes to at least one byte, and a character is at most four
        self.window = 4 * max((len(s) for s in self.stop), default=0) + 4

    def ended(self, prompts: Sequence[int], rows: Sequence[list[int]]) -> list[str | None]:
        """For each row (its prompt's index and its response so far, newest token last): "eos", "stop" or None."""
        reasons: list[str | None] = [EOS if t[-1] in self.lm.eos_ids else None for t in rows]
        open_rows = [i for i, r in enumerate(reasons) if r is None]
        if self.stop and open_rows:
            contexts = [self.prompts[prompts[i]] + rows[i][: -self.window] for i in open_rows]
            tails = self.lm.decode_after(contexts, [rows[i][-self.window :] for i in open_rows])
            for i, tail in zip(open_rows, tails, strict=True):
                if any(s in tail for s in self.stop):
                    reasons[i] = STOP
        return reasons

    def texts(
        self, prompts: Sequence[int], rows: Sequence[list[int]], reasons: Sequence[str | None]
    ) -> list[tuple[str, str]]:
        """Each response's text, special tokens dropped, and the stop string that ended it ("" if none), which the
        text stops short of."""
        out = []
        for text, why in zip(self.lm.decode_after([self.prompts[p] for p in prompts], rows), reasons, strict=True):
            found = [(i, s) for s in self.stop if (i := text.find(s)) >= 0] if why == STOP else []
            i, stop = min(found, key=lambda f: f[0]) if found else (len(text), "")
            out.append((text[:i], stop))
        return out
