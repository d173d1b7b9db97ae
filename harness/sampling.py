"""Next-token sampling that matches transformers' `generate(do_sample=True)` draw for draw, one generator per prompt."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from harness.types import SampleConfig


class Sampler:
    """Temperature, top-k and top-p as transformers applies them, then multinomial draws per prompt.

    Each prompt owns a torch.Generator seeded from its request alone, and a prompt's rows are drawn in one call,
    so a prompt's tokens never depend on which other prompts share the batch.
    """

    def __init__(self, config: SampleConfig, device: torch.device):
        warpers = [TemperatureLogitsWarper(config.temperature)] if config.temperature != 1.0 else []
        if config.top_k:
            warpers.append(TopKLogitsWarper(config.top_k))
        if config.top_p < 1.0:  # skipped at 1.0: it sorts the whole vocabulary
            warpers.append(TopPLogitsWarper(config.top_p))
        self.warpers = LogitsProcessorList(warpers)
        self.device = device

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def draw(self, logits: torch.Tensor, groups: Sequence[tuple[int, int, torch.Generator]]) -> torch.Tensor:
        """Sample one token per row of `logits` [rows, vocab]; `groups` holds each prompt's (start, end, generator)."""
        probs = torch.softmax(self.warpers(None, logits), dim=-1)
        tokens = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
        for start, end, gen in groups:
            tokens[start:end] = torch.multinomial(probs[start:end], 1, generator=gen).squeeze(1)
        return tokens


def groups_of(
    row_prompt: Sequence[int], generators: Sequence[torch.Generator]
) -> list[tuple[int, int, torch.Generator]]:
    """Contiguous (start, end, generator) runs of rows that belong to the same prompt."""
    runs, start = [], 0
    for i in range(1, len(row_prompt) + 1):
        if i == len(row_prompt) or row_prompt[i] != row_prompt[start]:
            runs.append((start, i, generators[row_prompt[start]]))
            start = i
    return runs
