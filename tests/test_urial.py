"""In-context alignment (URIAL): the prompt, responses cut before the next exchange, the context rule, guidance, and
its place in a study (base checkpoints, templates, dry run)."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import study_dict, w2s

from baselines.urial import ASSISTANT, EXAMPLES, PREAMBLE, STOP, USER, Urial, urial_template
from harness.backends.hf import HFModel, encode_prompt
from harness.errors import UsageError
from harness.methods import make_method
from harness.study import Study
from harness.toy import build_gpt2, synthetic_corpus, train_tokenizer
from harness.types import FewShotTemplate, Request, SampleConfig, Template


@pytest.fixture(scope="module")
def marker_model() -> HFModel:
    """A small GPT-2 whose vocabulary holds the exchange headers' pieces and which writes them often: its responses
    run into a header within a few dozen tokens, as a base model continuing a URIAL prompt does."""
    torch.set_num_threads(1)
    tokenizer = train_tokenizer(synthetic_corpus(500, seed=0) + [f"{USER}\n{ASSISTANT}\n"] * 3000, 300)
    model = build_gpt2(tokenizer, 1, 32, seed=0, n_positions=4096, eos_logit=-30.0)
    headers = sorted({*tokenizer(USER)["input_ids"], *tokenizer(ASSISTANT)["input_ids"]})
    u = model.transformer.ln_f.bias / model.transformer.ln_f.bias.norm()
    with torch.no_grad():
        model.lm_head.weight[headers] = 0.4 * u  # their logits stand about 4 above the rest
    return HFModel(model, tokenizer, "marker-model")


def test_prompt_is_preamble_examples_then_instruction(zoo):
    template = urial_template(Template("Question: {prompt}"))
    text = template.render(zoo.strong.tokenizer, "Why is the sky blue?")
    assert text.startswith(PREAMBLE)
    assert text.endswith(f"{USER}\nQuestion: Why is the sky blue?\n\n{ASSISTANT}\n")
    assert all(q in text and a in text for q, a in EXAMPLES)
    assert text.count(USER) == len(EXAMPLES) + 1
    assert urial_template(template) is template  # already in-context: kept as it is
    fewer = urial_template(Template(), examples=1).render(zoo.strong.tokenizer, "x")
    assert EXAMPLES[0][1] in fewer and EXAMPLES[1][1] not in fewer
    assert not urial_template(Template(chat=True)).chat  # a URIAL prompt never goes through a chat template


def test_examples_never_leak_into_responses(marker_model):
    requests = [Request(str(i), p, seed=10 + i) for i, p in enumerate(["What is a film?", "Hi", "Tell me a story"])]
    outputs = Urial().decode(marker_model, requests, SampleConfig(max_new_tokens=120))
    template = urial_template(Template())
    for request, output in zip(requests, outputs, strict=True):
        prompt = marker_model.encode_prompt(template, request.prompt)
        raw = marker_model.decode_after([prompt], [output.tokens])[0]
        assert output.finish_reason == "stop"
        cut = min(i for s in STOP if (i := raw.find(s)) >= 0)  # the model did write a header...
        assert output.text == raw[:cut].rstrip()  # ...and the response stops before it, trailing whitespace cut
        stop = next(s for s in STOP if raw.startswith(s, cut))
        assert output.text + output.stop == raw[:cut] + stop  # the guide reads what the search read
        assert not any(s in output.text for s in STOP)
        assert PREAMBLE[:40] not in output.text and not any(a[:40] in output.text for _, a in EXAMPLES)


def test_long_prompts_drop_examples_from_the_end_then_refuse(marker_model):
    tokenizer, template, new = marker_model.tokenizer, urial_template(Template()), 50
    lengths = [len(tokenizer(template.render(tokenizer, "Hi", k))["input_ids"]) for k in range(len(EXAMPLES) + 1)]
    assert lengths == sorted(lengths)
    # room for two examples: the third goes
    two = encode_prompt(tokenizer, lengths[2] + new, "m", template, "Hi", new)
    assert tokenizer.decode(two) == template.render(tokenizer, "Hi", 2)
    assert (
        encode_prompt(tokenizer, lengths[2] + new - 1, "m", template, "Hi", new)
        == tokenizer(template.render(tokenizer, "Hi", 1))["input_ids"]
    )
    # no room even for the preamble and the instruction alone: refused in one line
    with pytest.raises(UsageError, match="no in-context examples left") as err:
        encode_prompt(tokenizer, lengths[0] + new - 1, "m", template, "Hi", new)
    assert "\n" not in str(err.value)


def test_urial_as_the_strong_prompt_under_guidance(zoo):
    """Under CBS the strong model reads the URIAL prompt while the guide reads the bare instruction in its own
    template: the response's score is the guide's reward of it after the bare prompt."""
    method = Urial(width=2, successors=2, chunk_length=3)
    assert method.needs_guide and not Urial().needs_guide
    prompt, sample = "The film was", SampleConfig(max_new_tokens=7)
    guide = zoo.guide_other_vocab  # reads text: its reward of a response is score_text's
    (output,) = method.decode(zoo.strong, [Request("0", prompt, seed=3)], sample, guide=guide)
    prompt_ids = zoo.strong.encode_prompt(urial_template(Template()), prompt, sample.max_new_tokens)
    raw = zoo.strong.decode_after([prompt_ids], [output.tokens])[0]
    assert output.finish_reason == "length" and len(output.trace) == 3
    assert output.score == pytest.approx(guide.score_text([prompt], [raw], [False])[0], abs=1e-4)
    with pytest.raises(UsageError, match="needs a guide"):
        method.decode(zoo.strong, [Request("0", prompt)], sample)


def test_labels_and_parameters():
    assert Urial().label() == "urial"
    assert make_method("urial", width=1, successors=4).label() == "urial+bon(N=4)"
    assert make_method("urial", width=2, successors=2, chunk_length=30).label() == "urial+cbs(W=2,K=2,L=30)"
    assert make_method("urial", examples=1).label() == "urial(examples=1)"
    for bad in ({"examples": 4}, {"examples": -1}, {"examples": True}, {"width": 0}, {"chunk_length": 0}):
        with pytest.raises(UsageError, match="urial"):
            make_method("urial", **bad)
    with pytest.raises(UsageError, match="chat template"):
        FewShotTemplate(chat=True)


def test_study_decodes_urial_with_the_base_checkpoint(zoo, gold_paths, data_dir, capsys):
    raw = study_dict(zoo, gold_paths, data_dir)
    raw["tasks"].pop("tldr")
    raw["tasks"]["imdb"]["base"] = {"strong": str(zoo.paths["strong"])}
    raw["methods"] = ["plain", "urial", {"urial": {"width": 2, "successors": 2, "chunk_length": 3}}]
    study = Study(raw)
    cells = {(c.method.label(), c.seed): c for c in study.cells()}
    plain, alone, guided = cells["plain", 0], cells["urial", 0], cells["urial+cbs(W=2,K=2,L=3)", 0]
    assert study.cell_model(plain).path == str(zoo.paths["strong_ending"])
    assert study.cell_model(alone).path == study.cell_model(guided).path == str(zoo.paths["strong"])
    assert isinstance(study.cell_template(alone), FewShotTemplate)
    assert study.identity(alone)["template"]["shots"] and "shots" not in study.identity(plain)["template"]
    assert study.guide_template("imdb") == Template("{prompt}")
    config = data_dir / "urial.yaml"
    config.write_text(yaml.safe_dump(raw))
    code, out, err = w2s(capsys, "run", str(config), "--dry-run")
    assert code == 0, err
    assert "urial, urial+cbs(W=2,K=2,L=3)" in out and "no model weights were loaded" in out
    code, out, err = w2s(capsys, "run", str(config), "seeds=[0]", "limit=2", "--no-progress")
    assert code == 0, err
    samples = (data_dir / "runs" / "imdb" / "strong" / "urial-cbs-W2-K2-L3" / "seed-0" / "samples.jsonl").read_text()
    assert samples.count("\n") == 2 and ASSISTANT not in samples
