"""The paper's reference code made choices this harness makes differently by default; each is a config value, and
both behaviours of each are tested here."""

from __future__ import annotations

import copy

import pytest
from conftest import study_dict
from reference import full_rescore, full_rescore_text, hf_generate, sum_logprobs
from test_alpacaeval import chat_study

from harness.backends.hf import HFModel
from harness.guide import Guide, common_prefix
from harness.methods import make_method
from harness.runner import Runner
from harness.scorers import GuideReward, Item
from harness.store import read_samples
from harness.study import Study
from harness.types import SampleConfig, Template

SAMPLE = SampleConfig(max_new_tokens=12, temperature=0.7, top_k=50)


def with_eos_at_budget(guide: Guide) -> Guide:
    return Guide(guide.tuned, guide.untuned, guide.beta, guide.template, guide.retokenize, eos_at_budget=True)


@pytest.mark.parametrize("eos_at_budget", [False, True])
def test_best_of_n_ranks_truncated_candidates_with_or_without_the_guides_eos(zoo, requests, eos_at_budget):
    """The strong model never ends early, so every candidate is cut by the budget: with `eos_at_budget` the guide
    scores them as finished (its EOS appended), as the paper's code does."""
    guide = with_eos_at_budget(zoo.guide) if eos_at_budget else zoo.guide
    n, changed = 6, 0
    outputs = make_method("bon", n=n).decode(zoo.strong, requests, SAMPLE, guide=guide)
    for request, output in zip(requests, outputs, strict=True):
        candidates = hf_generate(zoo.strong, request.prompt, request.seed, SAMPLE, n=n)
        rewards = {
            eos: [full_rescore(guide, zoo.strong, request.prompt, c, eos) for c in candidates] for eos in (False, True)
        }
        best = {eos: max(range(n), key=rewards[eos].__getitem__) for eos in (False, True)}
        assert output.finish_reason == "length"
        assert output.tokens == candidates[best[eos_at_budget]]
        assert output.score == pytest.approx(rewards[eos_at_budget][best[eos_at_budget]], abs=1e-4)
        changed += best[False] != best[True]
    assert changed > 0  # the option changes some picks here, so the test tells the two behaviours apart


@pytest.mark.parametrize("which", ["guide", "guide_other_vocab"])
def test_cbs_last_chunk_scores_the_guides_eos_only_with_eos_at_budget(zoo, requests, which):
    plain_guide = getattr(zoo, which)
    cbs = make_method("cbs", width=2, successors=2, chunk_length=4)
    for guide, eos in ((plain_guide, False), (with_eos_at_budget(plain_guide), True)):
        outputs = cbs.decode(zoo.strong, requests[:4], SAMPLE, guide=guide)
        items = [Item(r.prompt, o.text, finished=False) for r, o in zip(requests[:4], outputs, strict=True)]
        for request, o, proxy in zip(requests[:4], outputs, GuideReward(guide)(items), strict=True):
            assert o.finish_reason == "length" and len(o.trace) == 3
            text_reward = full_rescore_text(guide, request.prompt, o.text, eos)
            searched = (
                text_reward
                if which == "guide_other_vocab"
                else full_rescore(guide, zoo.strong, request.prompt, o.tokens, eos)
            )
            assert o.score == pytest.approx(searched, abs=1e-4)
            assert proxy == pytest.approx(text_reward, abs=1e-4)  # the reported proxy counts the EOS alike


def test_eos_at_budget_is_a_guide_config_value_that_reaches_the_reported_score(zoo, gold_paths, data_dir):
    raw = study_dict(zoo, gold_paths, data_dir) | {"seeds": [0], "limit": 2}
    raw["tasks"].pop("tldr")
    raw["models"]["strong"] = str(zoo.paths["strong"])  # never ends early: every response is cut by the budget
    raw["methods"] = [{"bon": {"n": 2}}]
    raw["guides"]["g"]["eos_at_budget"] = True
    study = Study(raw)
    Runner(study, progress=False).run()
    (cell,) = study.cells()
    guide = Guide(zoo.guide.tuned, zoo.guide.untuned)
    for record in read_samples(cell.dir):
        assert record["finish_reason"] == "length"
        expected = full_rescore_text(guide, record["prompt"], record["response"], finished=True)
        assert record["scores"]["guide"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("branch_finished", [False, True])
def test_a_finished_hypothesis_takes_one_slot_unless_it_branches_like_the_papers_code(zoo, requests, branch_finished):
    """By default a kept finished hypothesis competes once in later rounds; with `branch_finished` it is branched K
    ways like an open one (the paper's code), so its copies can fill several of the W slots."""
    sample = SampleConfig(max_new_tokens=30)
    cbs = make_method("cbs", width=3, successors=3, chunk_length=3, branch_finished=branch_finished)
    outputs = cbs.decode(zoo.strong_ending, requests, sample, guide=zoo.guide)
    finished = [o for o in outputs if o.finish_reason == "eos"]
    assert finished  # the case occurs
    # the slots the chosen finished hypothesis holds, round after round (its score may tie with a twin sampled beside
    # it, but only branching can make it hold more slots in a later round than in the one before)
    grew = [
        b.count(o.score) > a.count(o.score)
        for o in finished
        for a, b in zip(o.trace, o.trace[1:], strict=False)
        if o.score in a
    ]
    assert any(grew) if branch_finished else not any(grew)
    assert cbs.label().endswith(",branch_finished)" if branch_finished else "L=3)")


def test_the_reported_guide_score_reads_through_the_stop_string_as_the_search_did(zoo, requests):
    """The search ranks a stopped response by its text through the stop string, then the guide's EOS (as the
    paper's code does); the reported proxy is that same number, though the response's text stops short of it."""
    guide, sample = zoo.guide_other_vocab, SampleConfig(max_new_tokens=30, stop=("e", "zz"))
    outputs = make_method("cbs", width=2, successors=2, chunk_length=3).decode(
        zoo.strong, requests, sample, guide=guide
    )
    stopped = [(r, o) for r, o in zip(requests, outputs, strict=True) if o.finish_reason == "stop"]
    assert stopped and all(o.stop == "" for o in outputs if o.finish_reason != "stop")
    items = [Item(r.prompt, o.text, finished=True, stop=o.stop) for r, o in stopped]
    for (request, o), proxy in zip(stopped, GuideReward(guide)(items), strict=True):
        assert o.stop == "e" and "e" not in o.text
        assert o.score == pytest.approx(full_rescore_text(guide, request.prompt, o.text + "e", True), abs=1e-4)
        assert proxy == pytest.approx(o.score, abs=1e-4)


def test_a_runs_samples_record_the_stop_string_and_score_through_it(zoo, gold_paths, data_dir):
    raw = study_dict(zoo, gold_paths, data_dir) | {"seeds": [0], "limit": 3}
    raw["tasks"].pop("tldr")
    raw["models"]["strong"] = str(zoo.paths["strong"])
    raw["tasks"]["imdb"] |= {"guide": "g_b", "sample": {"max_new_tokens": 20, "stop": ["e"]}}
    raw["methods"] = [{"cbs": {"width": 2, "successors": 2, "chunk_length": 3}}]
    study = Study(raw)
    Runner(study, progress=False).run()
    records = read_samples(study.cells()[0].dir)
    guide = Guide(zoo.guide_other_vocab.tuned, zoo.guide_other_vocab.untuned)  # g_b, beta 1
    assert any(r["finish_reason"] == "stop" for r in records)
    for r in records:
        assert r["stop"] == ("e" if r["finish_reason"] == "stop" else "")
        text, finished = r["response"] + r["stop"], r["finish_reason"] != "length"
        expected = full_rescore_text(guide, r["prompt"], text, finished)
        assert r["scores"]["guide"] == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("special_tokens", [True, False])
def test_a_non_chat_prompt_gets_bos_unless_prompt_special_tokens_is_off(llama_zoo, special_tokens):
    """A Llama-style tokenizer adds BOS to a prompt; the paper's code tokenises every prompt without special tokens.
    The strong model's prompt and the guide's re-tokenised prompt + response follow the template alike."""
    strong, tokenizer = llama_zoo.strong, llama_zoo.strong.tokenizer
    template = Template("Review: {prompt}", special_tokens=special_tokens)
    ids = strong.encode_prompt(template, "The film was")
    assert ids == tokenizer("Review: The film was", add_special_tokens=special_tokens)["input_ids"]
    assert (ids[0] == tokenizer.bos_token_id) == special_tokens
    g = llama_zoo.guide
    guide = Guide(g.tuned, g.untuned, template=template, retokenize=True)
    score = guide.score_text(["The film was"], [" good and slow"], [True])[0]

    def logp(lm) -> float:
        prompt = tokenizer("Review: The film was", add_special_tokens=special_tokens)["input_ids"]
        ids = tokenizer("Review: The film was good and slow", add_special_tokens=special_tokens)["input_ids"]
        return sum_logprobs(lm, [*ids, tokenizer.eos_token_id], common_prefix(prompt, ids))

    assert score == pytest.approx(logp(g.tuned) - logp(g.untuned), abs=3e-5)


@pytest.mark.parametrize("system", [None, "", "Be brief."])
def test_a_chat_prompt_sends_the_configured_system_message_even_an_empty_one(chat_paths, tmp_path, system):
    """The paper's code sends an empty system message to Llama-2-chat, Llama-3, zephyr and mistral-sft (a chat
    template renders it as an empty turn); null sends none."""
    raw = chat_study(chat_paths, tmp_path)
    for name in ("strong", "tuned"):
        raw["models"][name]["system"] = system
    study = Study(raw)
    cell = study.cells()[0]
    tokenizer = HFModel.load(study.specs["strong"]).tokenizer
    turn = "" if system is None else f"<|system|>\n{system}{tokenizer.eos_token}\n"
    expected = f"{turn}<|user|>\nSay a.{tokenizer.eos_token}\n<|assistant|>\n"
    for template in (study.cell_template(cell), study.guide_template(cell.task)):
        assert template.system == system and template.render(tokenizer, "Say a.") == expected
    assert study.identity(cell)["template"]["system"] == system  # part of what samples depend on


def test_prompt_options_reach_the_templates_and_the_identity(zoo, gold_paths, data_dir):
    raw = study_dict(zoo, gold_paths, data_dir)
    before = Study(copy.deepcopy(raw))
    raw["models"]["strong"] = {"path": raw["models"]["strong"], "prompt_special_tokens": False}
    after = Study(raw)
    cell = after.cells()[0]
    assert before.cell_template(cell).special_tokens and not after.cell_template(cell).special_tokens
    assert after.guide_template(cell.task).special_tokens  # the guide's own models keep theirs
    assert before.identity(cell)["template"] != after.identity(cell)["template"]
