"""Summarization (the paper's Fig. 3, right): write the TL;DR of a Reddit post.

Prompts are built from each post's subreddit, title and body with `format` (the paper's
"SUBREDDIT: r/..\nTITLE: ..\nPOST: ..\nTL;DR:"; OpenAI's original puts blank lines between fields), or taken from
a `prompt` field. The gold reward is a scalar-head reward model; the human reference summaries are kept for ROUGE,
reported beside the gold reward, never instead of it. The paper does not publish its summarization settings, so
every choice here is a config value with a documented default.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from harness.configs import option
from harness.errors import UsageError, require
from harness.scorers import ROUGE_KIND, RewardModel, Rouge
from harness.types import ModelSpec
from tasks.base import Example, SampleOptions, TaskConfig, first_present, load_records

REFERENCE_FIELDS = ("summary", "reference_summary", "completion")


@dataclass
class TLDRConfig(TaskConfig):
    data: str = option("trl-lib/tldr", "hub dataset id, or a local .jsonl(.gz)/.json of posts")
    format: str = option(
        "SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:",
        "prompt built from a post's fields (rows without them use their `prompt` field)",
    )
    gold: str = option("OpenAssistant/reward-model-deberta-v3-large-v2", "scalar reward model: hub id or directory")
    gold_text_pair: bool = option(True, "give the reward model (prompt, response) as a text pair")
    gold_template: str = option("{prompt}{response}", "reward model input when gold_text_pair is false")
    rouge: list[str] = option(["rouge1", "rouge2", "rougeL"], "ROUGE variants against the human reference summary")
    sample: SampleOptions = option(
        help="sampling settings (a summary ends at a newline)",
        default_factory=lambda: SampleOptions(max_new_tokens=53, stop=["\n"]),
    )


class TLDR:
    name = "tldr"
    Config = TLDRConfig

    def __init__(self, config: TLDRConfig):
        fields = {"subreddit", "title", "post"}
        try:
            used = {name for _, name, _, _ in string.Formatter().parse(config.format) if name is not None}
        except ValueError as err:
            raise UsageError(f"tasks.tldr.format {config.format!r} is not a format string ({err})") from None
        unknown = ", ".join(repr(name) for name in sorted(used - fields))
        require(
            not unknown,
            f"tasks.tldr.format may use {{subreddit}}, {{title}} and {{post}}, not {unknown} (write a literal brace "
            "as {{ or }})",
        )
        bad = [kind for kind in config.rouge if not re.fullmatch(ROUGE_KIND, kind)]
        require(
            not bad,
            f"tasks.tldr.rouge has unknown variant(s) {', '.join(bad)}; use rouge1, rouge2, rougeL or rougeLsum",
        )
        self.config = config

    def examples(self, limit: int | None = None) -> list[Example]:
        c = self.config
        examples = []
        for i, r in enumerate(load_records(c.data, c.split)[:limit]):
            if all(k in r for k in ("subreddit", "title", "post")):
                prompt = c.format.format(subreddit=r["subreddit"], title=r["title"], post=r["post"])
            else:
                prompt = first_present(r, ("prompt",), c.data)
            reference = next((r[k] for k in REFERENCE_FIELDS if r.get(k)), None)
            examples.append(Example(str(r.get("id", i)), prompt, reference=reference))
        return examples

    def gold_scorer(self, device: str | None) -> RewardModel:
        c = self.config
        spec = ModelSpec(c.gold, dtype=c.gold_dtype, device=device)
        return RewardModel(
            "gold", spec, template=c.gold_template, text_pair=c.gold_text_pair, batch_size=c.gold_batch_size
        )

    def reference_scorers(self) -> list[Rouge]:
        return [Rouge(kind) for kind in self.config.rouge]
