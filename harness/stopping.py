"""When a response ends (an EOS token or a stop string) and what its text is."""

from __future__ import annotations

from collections.abc import Sequence

from harness.backends.hf import HFModel

EOS, STOP, LENGTH = "eos", "stop", "length"


class Stopper:
    """Checks each newly sampled token for EOS or a completed stop string and cuts the final text.

    Stop strings are found by decoding only a window of recent tokens, wide enough to hold any of them,
    so the check costs the same at token 10 and at token 2,000.
    """

    def __init__(self, lm: HFModel, stop: Sequence[str] = ()):
        self.lm = lm
        self.stop = tuple(stop)
        # every token decodes to at least one byte, and a character is at most four
        self.window = 4 * max((len(s) for s in self.stop), default=0) + 4

    def ended(self, tokens: Sequence[list[int]]) -> list[str | None]:
        """For each row's response so far (its newest token last): "eos", "stop" or None while it goes on."""
        reasons: list[str | None] = [EOS if t[-1] in self.lm.eos_ids else None for t in tokens]
        open_rows = [i for i, r in enumerate(reasons) if r is None]
        if self.stop and open_rows:  # (batch_decode reads an empty list as one empty sequence)
            tails = self.lm.tokenizer.batch_decode(
                [tokens[i][-self.window :] for i in open_rows], skip_special_tokens=True
            )
            for i, tail in zip(open_rows, tails, strict=True):
                if any(s in tail for s in self.stop):
                    reasons[i] = STOP
        return reasons

    def text(self, tokens: list[int], reason: str) -> str:
        """The response text: special tokens dropped, and cut before the first stop string when one ended it."""
        text = self.lm.decode(tokens)
        if reason == STOP:
            text = text[: min((i for s in self.stop if (i := text.find(s)) >= 0), default=len(text))]
        return text
