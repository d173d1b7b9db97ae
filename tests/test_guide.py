"""The guide's incremental implicit reward equals a full re-score of prompt + response, whatever the chunking."""

from __future__ import annotations

import random

import pytest
from reference import full_rescore, random_response, response_text

from harness.backends.hf import KVRows
from harness.guide import Guide, GuideState, _Row


def update(state: GuideState, strong, prompts: list[str], responses: list[list[int]], finished: list[bool]) -> None:
    """Give the state each row's strong tokens and, where it re-tokenises, the text they read as after the prompt."""
    texts = [response_text(strong, p, r) for p, r in zip(prompts, responses, strict=True)] if state.needs_text else None
    state.update(responses, texts, finished)


@pytest.mark.parametrize("which", ["guide", "guide_other_vocab"])
def test_incremental_reward_equals_full_rescore(zoo, which):
    guide: Guide = getattr(zoo, which)
    rng = random.Random(0)
    prompts = ["The film was", "Bad", "She said the plot was never going to work, and"]
    full = [random_response(zoo.strong, rng, 40) for _ in prompts]
    state = guide.start(zoo.strong, prompts)
    rows, lengths = list(range(len(prompts))), [0] * len(prompts)
    for step in range(12):
        lengths = [min(n + rng.randint(0, 6), 40) for n in lengths]
        prefixes = [full[r][:n] for r, n in zip(rows, lengths, strict=True)]
        update(state, zoo.strong, [prompts[r] for r in rows], prefixes, [False] * len(rows))
        if step == 5:  # beams are reordered, duplicated and dropped, as a search does
            pick = [2, 0, 0, 1]
            state.select(pick)
            rows, lengths = [rows[i] for i in pick], [lengths[i] for i in pick]
    got = state.rewards()
    for reward, r, n in zip(got, rows, lengths, strict=True):
        assert reward == pytest.approx(full_rescore(guide, zoo.strong, prompts[r], full[r][:n], False), abs=1e-4)


@pytest.mark.parametrize("which", ["guide", "guide_other_vocab"])
def test_finished_response_also_scores_the_guides_eos(zoo, which):
    guide: Guide = getattr(zoo, which)
    rng = random.Random(1)
    prompts = ["It is", "Why"]
    responses = [random_response(zoo.strong, rng, 9), [*random_response(zoo.strong, rng, 6), zoo.strong.eos_id]]
    state = guide.start(zoo.strong, prompts)
    update(state, zoo.strong, prompts, [r[:4] for r in responses], [False, False])
    update(state, zoo.strong, prompts, responses, [True, True])
    for reward, prompt, response in zip(state.rewards(), prompts, responses, strict=True):
        expected = full_rescore(guide, zoo.strong, prompt, response, True)
        assert reward == pytest.approx(expected, abs=1e-4)
        body = [t for t in response if t not in zoo.strong.eos_ids]
        assert reward != pytest.approx(full_rescore(guide, zoo.strong, prompt, body, False), abs=1e-4)


def test_token_by_token_retokenisation_rewinds_and_stays_exact(zoo, monkeypatch):
    """One strong token at a time: the guide's own tokens re-split often, and each re-split is rewound."""
    rewound = []
    forget = KVRows.forget
    monkeypatch.setattr(KVRows, "forget", lambda self, row, cols: (rewound.append(len(cols)), forget(self, row, cols)))
    guide = zoo.guide_other_vocab
    response = random_response(zoo.strong, random.Random(2), 40)
    state = guide.start(zoo.strong, ["A long, slow story about"])
    for n in range(1, len(response) + 1):
        update(state, zoo.strong, ["A long, slow story about"], [response[:n]], [False])
        expected = full_rescore(guide, zoo.strong, "A long, slow story about", response[:n], False)
        assert state.rewards()[0] == pytest.approx(expected, abs=1e-4)
    assert len(rewound) >= 5  # the case this test exists for did happen


def test_guide_reads_each_token_once_when_vocabularies_match(zoo):
    prompts = ["The film was", "Bad"]
    state = zoo.guide.start(zoo.strong, prompts)
    prefill = state.last_step().tokens
    responses = [random_response(zoo.strong, random.Random(3), 12) for _ in prompts]
    read = [0, 0]
    for n in (3, 7, 12):
        update(state, zoo.strong, prompts, [r[:n] for r in responses], [False, False])
        read = [a + b for a, b in zip(read, state.last_step().tokens, strict=True)]
    prompt_lengths = [len(zoo.strong.tokenizer(p)["input_ids"]) for p in prompts]
    assert prefill == [2 * (n - 1) for n in prompt_lengths]  # both models, the last prompt token held back
    assert read == [2 * 12, 2 * 12]


def test_a_rows_bookkeeping_checks_its_invariants():
    """The re-tokenised stream's per-row state refuses to drift: lists in step, columns in reading order, every
    response token read."""
    row = _Row.prefilled([5, 6, 7], "a b c", first_col=2)  # 5 and 6 in columns 2, 3; 7 held back
    row.read([8, 9], [-1.0, -2.0], first_col=4)
    assert (row.ids, row.cols, row.logp()) == ([5, 6, 7, 8, 9], [2, 3, 4, 5], -3.0)
    assert row.rewind([5, 6, 10]) == [3, 4, 5] and (row.ids, row.cols) == ([5, 6], [2])
    row.read([10], [-0.5], first_col=6)  # the prompt's last token merged into the response: it is scored now
    assert row.response_start() == 2 and row.logp() == -0.5
    with pytest.raises(AssertionError, match="out of order"):
        row.copy().read([11], [-1.0], first_col=5)
    with pytest.raises(AssertionError, match="never read"):
        row.copy().read([11], [None], first_col=7)
