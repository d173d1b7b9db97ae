"""CBS the way the paper's reference code runs it, as the benchmark's point of comparison (not a user method).

One prompt at a time: the prompt is read by all W*K rows, the strong model samples with a KV cache, and at every
chunk boundary the responses are decoded to text, re-tokenised with the prompt, and re-scored from scratch by both
guide models; the best W rows are kept and repeated K times.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

from harness.backends.hf import HFModel
from harness.guide import Guide
from harness.sampling import Sampler
from harness.types import SampleConfig


def _response_logprob(lm: HFModel, prompt: str, responses: list[str]) -> torch.Tensor:
    """log p(response | prompt) for each response: one uncached forward pass over prompt + response."""
    prompt_len = len(lm.tokenizer(prompt)["input_ids"])
    rows = [lm.tokenizer(prompt + r)["input_ids"] for r in responses]
    width = max(map(len, rows))
    ids = torch.tensor([r + [lm.pad_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    logprobs = lm.model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
    picked = logprobs[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    keep = mask[:, 1:].clone()
    keep[:, : prompt_len - 1] = 0
    return (picked * keep).sum(-1)


@torch.inference_mode()
def naive_cbs(
    strong: HFModel,
    guide: Guide,
    prompt: str,
    sample: SampleConfig,
    width: int,
    successors: int,
    chunk_length: int,
    seed: int,
) -> str:
    """Return the best response text for one prompt."""
    sampler = Sampler(sample, strong.device)
    generator = sampler.generator(seed)
    ids = strong.tokenizer(prompt, return_tensors="pt")["input_ids"].repeat(width * successors, 1)
    prompt_len = ids.shape[1]
    cache, feed = DynamicCache(config=strong.model.config), ids
    for step in range(1, sample.max_new_tokens + 1):
        logits = strong.model(input_ids=feed, past_key_values=cache, use_cache=True).logits[:, -1].float()
        feed = sampler.draw(logits, [(0, ids.shape[0], generator)])[:, None]
        ids = torch.cat([ids, feed], dim=1)
        if step % chunk_length == 0 or step == sample.max_new_tokens:
            texts = strong.tokenizer.batch_decode(ids[:, prompt_len:], skip_special_tokens=True)
            scores = _response_logprob(guide.tuned, prompt, texts) - _response_logprob(guide.untuned, prompt, texts)
            keep = scores.topk(width).indices.repeat(successors)
            ids, feed = ids[keep], feed[keep]
            cache.reorder_cache(keep)
    return strong.tokenizer.decode(ids[0, prompt_len:], skip_special_tokens=True)
