"""A response is exactly the text that follows its prompt, on every tokenizer, and the guide scores that text."""

from __future__ import annotations

import pytest
from reference import full_rescore, full_rescore_text

from harness.methods import make_method
from harness.sampling import Sampler
from harness.scorers import GuideReward, Item
from harness.types import Request, SampleConfig

PROMPT, RESPONSE = "I really", " liked it"


def scripted(monkeypatch, tokens: list[int]) -> None:
    """Every row draws tokens[t] at its t-th step (all rows advance in step), whatever the model prefers."""
    import torch

    step = iter(tokens)

    def draw(self, logits, groups):
        return torch.full((logits.shape[0],), next(step), dtype=torch.long, device=logits.device)

    monkeypatch.setattr(Sampler, "draw", draw)


def response_tokens(lm, prompt: str, response: str) -> list[int]:
    """The strong model's tokens of `response` as it continues `prompt`."""
    before, whole = lm.tokenizer(prompt)["input_ids"], lm.tokenizer(prompt + response)["input_ids"]
    assert whole[: len(before)] == before
    return whole[len(before) :]


METHODS = [("plain", {}), ("bon", {"n": 3}), ("cbs", {"width": 2, "successors": 2, "chunk_length": 2}), ("eft", {})]
CASES = [(m, g) for m in METHODS for g in ("guide", "guide_other_vocab") if m[0] != "eft" or g == "guide"]


@pytest.mark.parametrize(("method", "which"), CASES, ids=[f"{m[0]}-{w}" for m, w in CASES])
def test_a_sentencepiece_response_keeps_its_leading_space(llama_zoo, monkeypatch, method, which):
    strong, guide = llama_zoo.strong, getattr(llama_zoo, which)
    tokens = [*response_tokens(strong, PROMPT, RESPONSE), strong.eos_id]
    assert strong.tokenizer.decode(tokens, skip_special_tokens=True) == RESPONSE.lstrip()  # the decoder's habit
    scripted(monkeypatch, tokens)
    output = make_method(method[0], **method[1]).decode(
        strong, [Request("0", PROMPT)], SampleConfig(max_new_tokens=12), guide=guide
    )[0]
    assert (output.text, output.tokens, output.finish_reason) == (RESPONSE, tokens, "eos")
    assert PROMPT + output.text == "I really liked it"
    reported = GuideReward(guide)([Item(PROMPT, output.text)])[0]
    assert reported == pytest.approx(full_rescore_text(guide, PROMPT, RESPONSE, True), abs=1e-4)
    assert reported != pytest.approx(full_rescore_text(guide, PROMPT, RESPONSE.lstrip(), True), abs=1e-4)
    if output.score is not None:  # the search ranked what the guide reads: the strong tokens, or the right text
        expected = (
            full_rescore(guide, strong, PROMPT, tokens, True)
            if guide.tuned.same_vocab(strong)
            else full_rescore_text(guide, PROMPT, RESPONSE, True)
        )
        assert output.score == pytest.approx(expected, abs=1e-4)


def test_a_stop_string_at_the_start_of_a_sentencepiece_response_is_found(llama_zoo, monkeypatch):
    strong = llama_zoo.strong
    scripted(monkeypatch, [*response_tokens(strong, PROMPT, RESPONSE), strong.eos_id])
    output = make_method("plain").decode(strong, [Request("0", PROMPT)], SampleConfig(12, stop=(" liked",)))[0]
    assert (output.text, output.finish_reason) == ("", "stop")


def test_sampled_responses_read_as_they_follow_the_prompt(llama_zoo):
    """Whatever is sampled, prompt text + response text is the decoded prompt + response, on either tokenizer."""
    strong = llama_zoo.strong
    requests = [Request(str(i), p, seed=i) for i, p in enumerate(["I really", "The film was", "Bad", "é, “quoted” €"])]
    for output, request in zip(make_method("plain").decode(strong, requests, SampleConfig(20)), requests, strict=True):
        prompt = strong.tokenizer(request.prompt)["input_ids"]
        whole = strong.tokenizer.decode(prompt + output.tokens, skip_special_tokens=True)
        assert whole == strong.tokenizer.decode(prompt, skip_special_tokens=True) + output.text


@pytest.mark.parametrize(("prompt", "response"), [("a", "n"), ("a", "n old film"), ("th", "e film"), ("so", "me")])
def test_a_prompt_whose_only_token_merges_with_the_response_is_scored(zoo, prompt, response):
    """Re-tokenising "a" + "n" gives the one token "an": nothing is left of the prompt, as in the paper's scorer."""
    guide = zoo.guide_other_vocab
    ids = guide.tuned.tokenizer(prompt + response)["input_ids"]
    assert ids[0] != guide.tuned.tokenizer(prompt)["input_ids"][0]  # the case this test exists for
    for finished in (False, True):
        got = guide.score_text([prompt], [response], [finished])[0]
        assert got == pytest.approx(full_rescore_text(guide, prompt, response, finished), abs=1e-4)
