"""Tasks load the real data from local files and build the paper's prompts; scorers and their cache."""

from __future__ import annotations

import gzip
import json

import pytest
from conftest import shared
from reference import full_rescore_text

from harness.configs import build
from harness.errors import UsageError
from harness.scorers import GuideReward, Item, RewardModel, Rouge, ScoreCache
from harness.toy import build_classifier, train_classifier, train_tokenizer
from harness.types import ModelSpec
from tasks import task_class


def make_task(name: str, **options):
    cls = task_class(name)
    return cls(build(cls.Config, {"strong": ["s"], **options}, f"tasks.{name}"))


def test_imdb_prompts_are_seeded_prefixes_of_a_mix_of_reviews():
    data = str(shared("imdb", "imdb_test.jsonl.gz"))
    examples = make_task("imdb", data=data).examples(40)
    assert len(examples) == 40 and len({e.id for e in examples}) == 40
    assert all(2 <= len(e.prompt.split()) <= 8 for e in examples)
    assert {e.meta["label"] for e in examples} == {0, 1}  # the file is sorted by label; the sample mixes them
    assert [e.prompt for e in make_task("imdb", data=data).examples(40)] == [e.prompt for e in examples]
    other = make_task("imdb", data=data, data_seed=1).examples(40)
    assert [e.id for e in other] != [e.id for e in examples]
    longer = make_task("imdb", data=data, prefix_words=[10, 10]).examples(5)
    assert all(len(e.prompt.split()) == 10 for e in longer)
    first = make_task("imdb", data=data).examples(60)[:40]  # a larger limit keeps the first examples as they were
    assert [(e.id, e.prompt) for e in first] == [(e.id, e.prompt) for e in examples]


def test_imdb_prompt_files_are_used_as_they_are(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["This movie", "I watched", "Worst"]))
    examples = make_task("imdb", data=str(path)).examples(2)
    assert [(e.id, e.prompt) for e in examples] == [("0", "This movie"), ("1", "I watched")]


def test_tldr_prompts_follow_the_configured_format():
    data = str(shared("tldr", "tldr_test500.jsonl"))
    with open(data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f][:3]
    examples = make_task("tldr", data=data).examples(3)
    for row, e in zip(rows, examples, strict=True):
        assert e.prompt == row["prompt"]  # the shared file's own prompt: "SUBREDDIT: r/..\nTITLE: ..\nPOST: ..\nTL;DR:"
        assert e.reference == row["summary"] and e.id == row["id"]
    openai = make_task("tldr", data=data, format="SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:")
    assert openai.examples(1)[0].prompt.startswith(f"SUBREDDIT: r/{rows[0]['subreddit']}\n\nTITLE: ")


def test_missing_or_malformed_data_files_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        make_task("imdb", data=str(tmp_path / "nope.jsonl")).examples(1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    with pytest.raises(UsageError, match="is not JSON lines"):
        make_task("tldr", data=str(bad)).examples(1)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"title": "x"}) + "\n")
    with pytest.raises(UsageError, match="none of the fields prompt"):
        make_task("tldr", data=str(wrong)).examples(1)


@pytest.fixture(scope="module")
def sentiment_classifier(tmp_path_factory):
    """A small classifier trained here on real IMDB reviews, saved as a checkpoint directory."""
    with gzip.open(shared("imdb", "imdb_train.jsonl.gz"), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    rows = rows[:1500] + rows[-1500:]  # both labels (the file is sorted by label)
    texts, labels = [r["text"].replace("<br />", " ") for r in rows], [r["label"] for r in rows]
    tokenizer = train_tokenizer(texts, 1000)
    model = train_classifier(build_classifier(tokenizer, ["NEGATIVE", "POSITIVE"]), tokenizer, texts, labels, 200)
    path = tmp_path_factory.mktemp("sentiment")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_gold_sentiment_reward_has_the_right_sign(sentiment_classifier):
    gold = make_task("imdb", gold=str(sentiment_classifier)).gold_scorer("cpu")
    good, bad = gold(
        [
            Item("This movie", " was wonderful, brilliant and beautiful. A great film, I loved it."),
            Item("This movie", " was terrible, boring and awful. The worst film, a waste of time."),
        ]
    )
    assert good > 0 > bad


def test_reward_model_scalar_head_and_label_errors(gold_paths):
    scalar = RewardModel("gold", ModelSpec(str(gold_paths["scalar"]), device="cpu"), batch_size=2)
    items = [Item("Post", f" summary number {i}") for i in range(5)]
    scores = scalar(items)
    assert len(scores) == 5 and scores == scalar(items)  # batched in twos, deterministic
    assert scalar(items[3:4]) == pytest.approx(scores[3:4], abs=1e-5)
    odd = RewardModel("gold", ModelSpec(str(gold_paths["sentiment"]), device="cpu"), positive="GOOD")
    with pytest.raises(UsageError, match="set positive_label and negative_label"):
        odd(items)


def test_guide_reward_scores_response_text(zoo):
    items = [Item("The film was", " really good", True), Item("Bad", " and slow, with a dull", False)]
    for guide in (zoo.guide, zoo.guide_other_vocab):
        scores = GuideReward(guide, batch_size=1)(items)
        for item, score in zip(items, scores, strict=True):
            assert score == pytest.approx(full_rescore_text(guide, item.prompt, item.response, item.finished), abs=1e-4)


def test_rouge_against_the_reference():
    rouge = Rouge("rougeL")
    same, other = rouge(
        [Item("p", "the cat sat", reference="the cat sat"), Item("p", "a dog ran", reference="the cat sat")]
    )
    assert same == 1.0 and other == 0.0
    with pytest.raises(UsageError, match="needs a reference"):
        rouge([Item("p", "text")])


class Counting:
    key, identity = "n", "counting-v1"

    def __init__(self):
        self.seen = 0

    def __call__(self, items):
        self.seen += len(items)
        return [float(len(it.response)) for it in items]


def test_score_cache_computes_each_item_once_and_persists(tmp_path):
    scorer, items = Counting(), [Item("p", "a"), Item("p", "bb"), Item("q", "a")]
    cache = ScoreCache(tmp_path / "scores.sqlite")
    assert cache.score(scorer, items) == [1.0, 2.0, 1.0] and scorer.seen == 3
    assert cache.score(scorer, [*items, Item("p", "ccc")]) == [1.0, 2.0, 1.0, 3.0] and scorer.seen == 4
    cache.close()
    again = ScoreCache(tmp_path / "scores.sqlite")
    assert again.score(scorer, items) == [1.0, 2.0, 1.0] and scorer.seen == 4
    scorer.identity = "counting-v2"  # another model or setting: other numbers
    again.score(scorer, items)
    assert scorer.seen == 7


def test_reward_model_never_truncates_the_response(gold_paths):
    """A prompt longer than the model's context loses its start; the response is always read."""
    rm = RewardModel("gold", ModelSpec(str(gold_paths["scalar"]), device="cpu"), template="{prompt} {response}")
    long_post = "word " * 2000
    a, b = rm([Item(long_post, "a short summary"), Item(long_post, "something else entirely, longer")])
    assert a != b
    pair = RewardModel("gold", ModelSpec(str(gold_paths["scalar"]), device="cpu"), text_pair=True)
    a, b = pair([Item(long_post, "a short summary"), Item(long_post, "something else entirely, longer")])
    assert a != b
