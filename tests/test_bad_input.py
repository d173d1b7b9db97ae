"""Every mistake a user can make, command by command: each row of ROWS must end with exit code 2 and exactly one line
on stderr (no traceback) holding the expected message, load no model weights, and leave everything already on disk
as it was (paths, sizes, modification times and contents). Every `w2s run` row must be refused the same way with
`--dry-run`, which makes every check the run makes before it loads a model.

Adding a row is one line in ROWS:

    Row("what the mistake is", "w2s arguments", "a fragment of the message", {"file": "text"}, setup=...),

- The arguments are split like a shell line after $placeholders are filled (string.Template): $tmp is the row's own
  empty directory (also the working directory), and the session's fixtures are $config (a valid study over imdb:
  models strong, tuned, untuned, tuned_b, untuned_b; guides g and g_b; methods plain and cbs), $runs (that study,
  finished), $imdb (its data), $tldr (overrides that add a tldr task to it), $annotations (a valid alpaca_eval
  annotations file), and the model directories $strong, $tuned, $untuned, $tuned_b (another vocabulary),
  $untuned_b, $gold (a sentiment classifier).
- The optional dict writes files under $tmp before the row runs: {relative path: text (placeholders filled) or bytes};
  a path ending in "/" is an empty directory.
- The optional `setup(tmp, names)` does what files cannot (copy a model without some files, copy a finished run);
  it runs before the files are written. A few are below (model_copy, run_copy).
- A row that only fails on some machines takes pytest marks: pytest.param(Row(...), marks=ON_CPU_ONLY).
- Weights never load in a row (harness.backends.hf.from_pretrained fails the test if called): a check that can
  only happen after loading does not belong here. A new subcommand needs rows: a test fails until it has some.

The world is built once per session from the suite's small models, so a row costs well under a second.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import pytest
import torch
import yaml
from conftest import study_dict, w2s

from harness.errors import user_facing
from harness.runner import Runner
from harness.store import MANIFEST, SUMMARY
from harness.study import Study

ON_CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA, so the device exists")
CELL = "imdb/strong/plain/seed-0"  # a cell of the finished world run
TWO_RULES = {"mean": 1, "ci_low": 0, "ci_high": 2, "ci_factor": 2, "tolerance": 1}  # a regress baseline entry


@dataclass(frozen=True)
class Row:
    what: str  # the mistake, in a few words (the test's id)
    argv: str  # w2s's arguments, with $placeholders
    expect: str  # a fragment of the one-line message
    files: dict[str, str | bytes] = field(default_factory=dict)  # written under $tmp first
    setup: Callable[[Path, dict[str, str]], None] | None = None  # runs before the files are written


def model_copy(*without: str, source: str = "strong") -> Callable[[Path, dict[str, str]], None]:
    """$tmp/model: a copy of a world model directory without the files named (glob patterns)."""

    def setup(tmp: Path, names: dict[str, str]) -> None:
        shutil.copytree(names[source], tmp / "model", ignore=shutil.ignore_patterns(*without))

    return setup


def run_copy(*without: str) -> Callable[[Path, dict[str, str]], None]:
    """$tmp/runs: a copy of the finished world run without the files named (glob patterns), to damage."""

    def setup(tmp: Path, names: dict[str, str]) -> None:
        shutil.copytree(names["runs"], tmp / "runs", ignore=shutil.ignore_patterns(*without))

    return setup


def damaged_weights(tmp: Path, names: dict[str, str]) -> None:
    """$tmp/model: a copy of the strong model whose weights file was cut short, as by an interrupted copy."""
    model_copy()(tmp, names)
    weights = tmp / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def older_cells(tmp: Path, names: dict[str, str]) -> None:
    """$tmp/runs: a copy of the finished world run whose cells say an older identity version made them."""
    run_copy()(tmp, names)
    for manifest in (tmp / "runs").rglob(MANIFEST):
        manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"identity_version": 1}))


def annotations(n: int = 3, **change) -> str:
    """An alpaca_eval annotations file of n rows, with fields changed (or removed, with None) in every row."""
    rows = []
    for i in range(n):
        row = {"instruction": f"q{i}", "output_1": "ref", "output_2": "answer", "preference": 1 + i % 2}
        row |= {"generator_1": "gpt4_1106_preview", "generator_2": "model"}
        row |= {k: v(i) if callable(v) else v for k, v in change.items()}
        rows.append({k: v for k, v in row.items() if v is not None})
    return json.dumps(rows)


def lines(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


DATA = lines(*({"id": f"r{i}", "text": f"Review {i}: a slow film."} for i in range(3)))  # the world study's data
SHARDED = '{"weight_map": {"h.0": "model-00001-of-00002.safetensors", "h.1": "model-00002-of-00002.safetensors"}}'
REVIEW = {"id": "a", "text": "A film."}
PAIRS = lines({"prompt": "A film", "chosen": " was good.", "rejected": " was bad."})  # preference pairs for w2s tune
PAIR_NO_REJECTED = lines({"prompt": "A film", "chosen": " was good."})
PAIR_NUMBER = lines({"prompt": "A film", "chosen": 5, "rejected": " was bad."})
P = {"p.jsonl": PAIRS}
TUNE_DPO, TUNE_SFT = "tune dpo $untuned $tmp/p.jsonl $tmp/out", "tune sft $untuned $tmp/p.jsonl $tmp/out"
OTHER_RUN = json.dumps({"identity": {"settings": {"lr": 1.0}}, "state": "finished"})
PREFS = "prefs $strong $tmp/p.jsonl --data $imdb --gold $gold --device cpu"
INDEXED = lambda responses, chosen: lines({"prompt": "A", "responses": responses, "chosen": chosen})  # noqa: E731
MESSAGES = lines({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]})
# overrides that put the strong model behind an API on a port where nothing listens
API = "models.strong.backend=openai models.strong.path=null models.strong.base_url=http://127.0.0.1:9/v1 " + (
    "models.strong.model=strong"
)

# an alpacaeval task to add to the world study, and its data
AE = (
    "'tasks.ae={task: alpacaeval, data: $tmp/ae.json, strong: [strong], methods: [plain], sample: {max_new_tokens: 4}}'"
)
AE_FILES = {"ae.json": json.dumps([{"instruction": "Hi?", "output": "Hello.", "generator": "ref", "dataset": "d"}])}

SENTIMENT = "train sentiment $tmp/m --tokenizer $strong --data $imdb --eval $imdb"
SUMMARY_REWARD = "train summary-reward $tmp/m --tokenizer $strong --data $imdb"
POST = '{"subreddit": "a", "title": "b", "post": "c", "reference_summary": "d"}\n' * 3
ROWS = [
    # w2s itself
    Row("no command", "", "arguments are required: COMMAND"),
    Row("unknown command", "nonsense", "invalid choice: 'nonsense'"),
    # w2s generate: arguments
    Row("generate: no strong model", "generate --prompt hi", "required: --strong"),
    Row("generate: unknown method", "generate --strong $strong --method beam --prompt hi", "unknown method 'beam'"),
    Row("generate: bad cbs width", "generate --strong $strong --method cbs --set width=0 --prompt hi", "width (W)"),
    Row("generate: --set without =", "generate --strong $strong --set width --prompt hi", "expected KEY=VALUE"),
    Row(
        "generate: beta 0",
        "generate --strong $strong --tuned $tuned --untuned $untuned --method bon --beta 0 --prompt hi",
        "--beta must be a finite number > 0",
    ),
    Row("generate: cbs without a guide", "generate --strong $strong --method cbs --prompt hi", "needs --tuned"),
    Row("generate: urial examples -1", "generate --strong $strong --method urial --set examples=-1 --prompt hi",
        "urial examples must be an integer from 0 to 3"),
    Row("generate: guided urial without a guide", "generate --strong $strong --method urial --set successors=2 "
        "--prompt hi", "needs --tuned"),
    Row("generate: urial over the context", "generate --strong $strong --method urial --max-new-tokens 1000 "
        "--prompt hi", "no in-context examples left"),
    Row("generate: no prompt", "generate --strong $strong", "no prompts: give at least one --prompt"),
    Row("generate: bad dtype", "generate --strong $strong --dtype fp8 --prompt hi", "unknown dtype 'fp8'"),
    Row("generate: zero new tokens", "generate --strong $strong --max-new-tokens 0 --prompt hi", "max_new_tokens"),
    Row("generate: non-integer tokens", "generate --strong $strong --max-new-tokens many --prompt hi", "invalid int"),
    Row("generate: zero temperature", "generate --strong $strong --temperature 0 --prompt hi", "temperature must"),
    Row("generate: top-p above 1", "generate --strong $strong --top-p 1.5 --prompt hi", "top_p must be in (0, 1]"),
    Row("generate: template without {prompt}", "generate --strong $strong --template Hi --prompt hi", "{prompt}"),
    Row("generate: unknown option", "generate --strong $strong --prompt hi --beam 4", "unrecognized arguments"),
    # w2s generate: models, devices, prompts
    Row("generate: no such model dir", "generate --strong $tmp/none --prompt hi", "does not exist"),
    Row("generate: empty model dir", "generate --strong $tmp/m --prompt hi", "is empty", {"m/": ""}),
    Row("generate: config only", "generate --strong $tmp/model --prompt hi", "no weights", setup=model_copy("*.safe*")),
    Row("generate: no tokenizer", "generate --strong $tmp/model --prompt hi", "no tokenizer", setup=model_copy("tok*")),
    Row("generate: no config", "generate --strong $tmp/model --prompt hi", "no config.json", setup=model_copy("conf*")),
    Row(
        "generate: a shard missing",
        "generate --strong $tmp/model --prompt hi",
        "lacks 2 weight file(s)",
        {"model/model.safetensors.index.json": SHARDED},
        setup=model_copy("model.safetensors"),
    ),
    Row("generate: device typo", "generate --strong $strong --device gpu --prompt hi", "unknown device 'gpu'"),
    Row("generate: no such GPU", "generate --strong $strong --device cuda:99 --prompt hi", "'cuda:99' does not exist"),
    pytest.param(
        Row("generate: cuda on a CPU machine", "generate --strong $strong --device cuda --prompt hi", "'cuda' does"),
        marks=ON_CPU_ONLY,
    ),
    Row("generate: --chat, no template", "generate --strong $strong --chat --prompt hi", "has no chat template"),
    Row("generate: prompt renders empty", "generate --strong $strong --prompt ''", "renders to no tokens"),
    Row("generate: over the context", "generate --strong $strong --max-new-tokens 5000 --prompt hi", "exceeds the"),
    Row(
        "generate: eft across vocabularies",
        "generate --strong $strong --tuned $tuned_b --untuned $untuned_b --method eft --prompt hi",
        "share the strong model's vocabulary",
    ),
    # w2s run: the config
    Row("run: no config", "run", "no config given"),
    Row("run: config not found", "run $tmp/none.yaml", "not found"),
    Row("run: config not YAML", "run $tmp/c.yaml", "cannot read config", {"c.yaml": "study: [unclosed"}),
    Row("run: config a list", "run $tmp/c.yaml", "must be a YAML mapping", {"c.yaml": "- a\n- b\n"}),
    Row("run: unknown key", "run $config sedes=[0]", "unknown key sedes"),
    Row("run: override without =", "run $config limit", "must look like key.path=value"),
    Row("run: wrong type", "run $config limit=many", "limit must be an integer or null"),
    Row("run: limit 0", "run $config limit=0", "limit must be >= 1"),
    Row("run: no seeds", "run $config seeds=[]", "seeds is empty"),
    Row("run: a seed twice", "run $config seeds=[0,0]", "seeds lists a seed twice"),
    Row("run: no methods", "run $config methods=[]", "methods is empty"),
    Row("run: unknown method", "run $config methods=[beam]", "unknown method 'beam'"),
    Row("run: bad method parameter", "run $config 'methods=[{cbs: {width: 0}}]'", "width (W) must be an integer"),
    Row("run: urial examples 9", "run $config 'methods=[{urial: {examples: 9}}]'", "urial examples must be"),
    Row("run: urial width 0", "run $config 'methods=[{urial: {width: 0}}]'", "urial width (W) must be an integer"),
    Row("run: urial unknown parameter", "run $config 'methods=[{urial: {shots: 2}}]'", "has no parameter shots"),
    Row("run: urial base names nothing", "run $config methods=[urial] tasks.imdb.base.nope=$strong",
        "tasks.imdb.base names model 'nope'"),
    Row("run: urial base missing", "run $config methods=[urial] tasks.imdb.base.strong=./gone",
        "tasks.imdb.base.strong: directory './gone' does not exist"),
    Row("run: urial over the context", "run $config methods=[urial] tasks.imdb.sample.max_new_tokens=1000",
        "no in-context examples left"),
    Row(
        "run: branch_finished not a bool",
        "run $config 'methods=[{cbs: {branch_finished: sometimes}}]'",
        "cbs branch_finished must be true or false",
    ),
    Row("run: unknown task", "run $config tasks.gsm8k.strong=[strong]", "unknown task 'gsm8k'"),
    Row("run: model names nothing", "run $config tasks.imdb.strong=[nope]", "names model 'nope'"),
    Row("run: only 'tuned', no cells", "run $config methods=[tuned] tasks.imdb.tuned.tuned=$tuned", "has no cells"),
    Row("run: infinite temperature", "run $config tasks.imdb.sample.temperature=.inf", "temperature must be > 0"),
    Row("run: guide beta not a number", "run $config guides.g.beta=.nan", "guides.g.beta must be a finite number"),
    Row("run: guide beta 0", "run $config guides.g.beta=0", "guides.g.beta must be a finite number > 0"),
    Row("run: eos_at_budget not a bool", "run $config guides.g.eos_at_budget=sometimes", "eos_at_budget must be"),
    Row("run: system without chat", "run $config 'models.strong.system=\"\"'", "models.strong.system is set but"),
    Row("run: system not text", "run $config models.strong.system=[a]", "models.strong.system must be"),
    Row("run: special tokens not a bool", "run $config models.strong.prompt_special_tokens=no_", "must be true or"),
    Row("run: gold batch size 0", "run $config tasks.imdb.gold_batch_size=0", "gold_batch_size must be >= 1"),
    Row("run: tldr format field", "run $config $tldr 'tasks.tldr.format=\"{foo}\"'", "not 'foo'"),
    Row("run: tldr ROUGE variant", "run $config $tldr tasks.tldr.rouge=[rougeX]", "rougeX"),
    # w2s run: judges (an alpacaeval task "ae" added to the world study)
    Row("run: unknown judge kind", "run $config 'judges.j={kind: gpt}'", "judges.j.kind must be one of openai"),
    Row(
        "run: a key where its variable's name goes",
        "run $config 'judges.j={kind: openai, model: m, api_key_env: sk-4f2a}'",
        "must be the NAME of an environment variable",
    ),
    Row("run: task names no judge", f"run $config {AE} tasks.ae.judges=[nope]", "judges[0] names 'nope'", AE_FILES),
    Row(
        "run: judge key variable unset",
        f"run $config {AE} tasks.ae.judges=[j] 'judges.j={{kind: openai, model: m, api_key_env: W2S_NO_SUCH_KEY}}'",
        "environment variable W2S_NO_SUCH_KEY, which is not set",
        AE_FILES,
    ),
    Row(
        "run: a language model as judge",
        f"run $config {AE} tasks.ae.judges=[j] 'judges.j={{kind: reward_model, path: $strong}}'",
        "judge j: reward model",
        AE_FILES,
    ),
    Row(
        "run: judge model missing",
        f"run $config {AE} tasks.ae.judges=[j] 'judges.j={{kind: reward_model, path: $tmp/none}}'",
        "judges.j.path: directory",
        AE_FILES,
    ),
    Row("run: bad shard", "run $config --shard 2/2", "needs 0 <= I < N"),
    Row("run: shard not I/N", "run $config --shard half", "--shard must look like I/N"),
    Row("run: empty shard", "run $config --shard 5/8", "selects no cells: the study has 2"),
    # w2s run: data
    Row("run: data missing", "run $config tasks.imdb.data=$tmp/none.jsonl", "does not exist"),
    Row("run: data a directory", "run $config tasks.imdb.data=$tmp", "is a directory; give the data file in it"),
    Row("run: data empty", "run $config tasks.imdb.data=$tmp/d.jsonl", "has no rows", {"d.jsonl": ""}),
    Row("run: data not JSON", "run $config tasks.imdb.data=$tmp/d.jsonl", "is not JSON lines", {"d.jsonl": "x\n"}),
    Row("run: data not UTF-8", "run $config tasks.imdb.data=$tmp/d.jsonl", "cannot be read", {"d.jsonl": b"\xff\n"}),
    Row("run: data not gzip", "run $config tasks.imdb.data=$tmp/d.jsonl.gz", "cannot be read", {"d.jsonl.gz": "{}"}),
    Row("run: rows not objects", "run $config tasks.imdb.data=$tmp/d.json", "not a JSON object", {"d.json": '["a"]'}),
    Row(
        "run: rows lack the fields",
        "run $config tasks.imdb.data=$tmp/d.jsonl",
        "none of the fields text, review",
        {"d.jsonl": lines({"body": "A film."})},
    ),
    Row(
        "run: a row lacks its prompt",
        "run $config tasks.imdb.data=$tmp/d.jsonl",
        "none of the fields prompt",
        {"d.jsonl": lines({"prompt": "A film"}, {"text": "A film."})},
    ),
    Row(
        "run: prompt not text",
        "run $config tasks.imdb.data=$tmp/d.jsonl",
        "must have text in 'prompt'",
        {"d.jsonl": lines({"prompt": 5})},
    ),
    Row(
        "run: repeated ids",
        "run $config tasks.imdb.data=$tmp/d.jsonl",
        "repeats example ids (a)",
        {"d.jsonl": lines(REVIEW, REVIEW)},
    ),
    Row(
        "run: prompt renders empty",
        "run $config tasks.imdb.data=$tmp/d.jsonl",
        "renders to no tokens",
        {"d.jsonl": lines({"prompt": ""})},
    ),
    Row(
        "run: alpacaeval rows lack fields",
        "run $config tasks.imdb.task=alpacaeval tasks.imdb.data=$tmp/e.json",
        "lacks the field(s) generator, dataset",
        {"e.json": json.dumps([{"instruction": "q", "output": "a"}])},
    ),
    # w2s run: models, devices, output
    Row("run: model dir missing", "run $config models.strong=$tmp/none", "directory '$tmp/none' does not exist"),
    Row("run: model dir empty", "run $config models.strong=$tmp/m", "is empty", {"m/": ""}),
    Row("run: model config only", "run $config models.strong=$tmp/model", "no weights", setup=model_copy("*.safe*")),
    Row("run: model weights damaged", "run $config models.strong=$tmp/model", "is damaged", setup=damaged_weights),
    Row(
        "run: model config not JSON",
        "run $config models.strong=$tmp/model",
        "cannot load the config of model directory",
        {"model/config.json": "{"},
        setup=model_copy(),
    ),
    Row("run: model no tokenizer", "run $config models.tuned=$tmp/model", "no tokenizer", setup=model_copy("tok*")),
    Row("run: gold no weights", "run $config tasks.imdb.gold=$tmp/model", "no weights", setup=model_copy("*.safe*")),
    Row("run: gold a language model", "run $config tasks.imdb.gold=$strong", "is a language model (GPT2LMHeadModel)"),
    Row("run: gold labels", "run $config tasks.imdb.positive_label=GOOD", "set positive_label and negative_label"),
    Row("run: tuned ckpt missing", "run $config methods=[tuned] tasks.imdb.tuned.strong=$tmp/x", "does not exist"),
    Row("run: device typo", "run $config device=gpu", "unknown device 'gpu'"),
    Row("run: no such GPU", "run $config device=cuda:99", "'cuda:99' does not exist"),
    pytest.param(Row("run: cuda on a CPU machine", "run $config device=cuda", "'cuda' does"), marks=ON_CPU_ONLY),
    Row("run: one model's device", "run $config models.untuned.device=cuda:9", "'cuda:9' does not exist"),
    Row("run: device_map typo", "run $config models.strong.device_map=gpu", "unknown device 'gpu'"),
    Row("run: bad dtype", "run $config dtype=fp8", "dtype must be one of"),
    Row("run: out under a file", "run $config out=$tmp/f/runs", "'$tmp/f' is a file", {"f": ""}),
    Row("run: out is a file", "run $config out=$tmp/f", "is a file, not a directory", {"f": ""}),
    Row("run: chat without a template", "run $config models.strong.chat=true", "has no chat template"),
    Row("run: chat template not a file", "run $config models.strong.chat_template=x", "neither Jinja text nor a"),
    Row(
        "run: chat template breaks",
        "run $config models.strong.chat=true 'models.strong.chat_template={% for %}'",
        "fails on a prompt",
    ),
    Row("run: eft across vocabularies", "run $config methods=[eft] tasks.imdb.guide=g_b", "share the strong model's"),
    Row("run: over the context", "run $config tasks.imdb.sample.max_new_tokens=5000", "exceeds the 1024-token"),
    # w2s run: a strong model behind an API
    Row("run: api key variable unset", f"run $config {API} models.strong.api_key_env=W2S_NO_KEY", "W2S_NO_KEY"),
    Row("run: api server unreachable", f"run $config {API}", "cannot reach the server at http://127.0.0.1:9/v1"),
    Row("run: api url not http", f"run $config {API} models.strong.base_url=localhost:9", "must start with http"),
    Row("run: api without a model", f"run $config {API} models.strong.model=null", "model is required with backend"),
    Row("run: api and a path", f"run $config {API} models.strong.path=$strong", "give base_url and model instead"),
    Row("run: unknown backend", "run $config models.strong.backend=vllm", "backend must be one of hf, openai"),
    Row("run: api with eft", f"run $config {API} methods=[eft]", "method eft changes every next-token distribution"),
    Row("run: api as a guide", f"run $config {API} guides.g.tuned=strong", "a guide's models must be loaded here"),
    Row("run: api with chat", f"run $config {API} models.strong.chat=true", "not available with backend openai"),
    # w2s run: resuming
    Row("run: resume, other settings", "run $config tasks.imdb.sample.temperature=0.9", "task.sample.temperature"),
    Row("run: resume, other data", "run $config tasks.imdb.data=$tmp/d.jsonl", "task.data differs", {"d.jsonl": DATA}),
    Row(
        "run: resume, manifest damaged",
        "run $config out=$tmp/runs",
        f"unreadable {MANIFEST}",
        {f"runs/{CELL}/{MANIFEST}": "{"},
        setup=run_copy(),
    ),
    Row("run: resume, older cells", "run $config out=$tmp/runs", "made by identity version 1", setup=older_cells),
    # w2s leaderboard
    Row("leaderboard: no run", "leaderboard", "required: RUN"),
    Row("leaderboard: not a directory", "leaderboard $tmp/none", "is not a directory"),
    Row("leaderboard: nothing judged", "leaderboard $runs", "no judged cell under"),
    Row("leaderboard: negative --around", "leaderboard $runs --around -1", "--around must be >= 0"),
    Row("leaderboard: not the board", "leaderboard $runs --board $tmp/b", "lacks the columns", {"b": "a,b\n1\n"}),
    Row("leaderboard: board missing", "leaderboard $runs --board $tmp/b.csv", "does not exist"),
    Row(
        "leaderboard: damaged winrate.json",
        "leaderboard $tmp/cell",
        "is not a winrate.json written by a judge",
        {"cell/judge-x/winrate.json": '{"win_rate": 3}'},
    ),
    # w2s serve
    Row("serve: no model", "serve", "required: model"),
    Row("serve: port out of range", "serve $strong --port 0", "--port must be in 1..65535"),
    Row("serve: port not a number", "serve $strong --port http", "invalid int value"),
    Row("serve: no batch rows", "serve $strong --max-batch-rows 0", "--max-batch-rows must be >= 1"),
    Row("serve: key variable unset", "serve $strong --api-key-env W2S_NO_SUCH_VARIABLE", "is not set"),
    Row("serve: no such model dir", "serve $tmp/none", "does not exist"),
    Row("serve: config only", "serve $tmp/model", "no weights", setup=model_copy("*.safe*")),
    Row("serve: device typo", "serve $strong --device gpu", "unknown device 'gpu'"),
    Row("serve: bad dtype", "serve $strong --dtype fp8", "unknown dtype 'fp8'"),
    # w2s tune
    Row("tune: no kind", "tune", "required: KIND"),
    Row("tune: unknown kind", "tune ppo $untuned $tmp/p.jsonl $tmp/out", "invalid choice: 'ppo'"),
    Row("tune: no data file", "tune dpo $untuned $tmp/none.jsonl $tmp/out", "does not exist"),
    Row("tune: data empty", TUNE_DPO, "has no rows", {"p.jsonl": ""}),
    Row("tune: data not JSON", TUNE_SFT, "is not JSON lines", {"p.jsonl": "x\n"}),
    Row("tune: parquet damaged", "tune sft $untuned $tmp/p.parquet $tmp/o", "not readable parquet", {"p.parquet": "1"}),
    Row("tune: dpo lacks rejected", TUNE_DPO, "lacks the columns", {"p.jsonl": PAIR_NO_REJECTED}),
    Row("tune: sft lacks text", TUNE_SFT, "give rows with text or prompt/completion", P),
    Row("tune: chosen not text", TUNE_DPO, "row 1 of", {"p.jsonl": PAIRS + PAIR_NUMBER}),
    Row("tune: model dir missing", "tune dpo $tmp/none $tmp/p.jsonl $tmp/out", "does not exist", P),
    Row("tune: model no weights", "tune dpo $tmp/model $tmp/p.jsonl $tmp/out", "no weights", P, model_copy("*.safe*")),
    Row("tune: model a classifier", "tune dpo $gold $tmp/p.jsonl $tmp/out", "is not a causal language model", P),
    Row("tune: out is a file", "tune dpo $untuned $tmp/p.jsonl $tmp/f", "is a file, not a directory", {**P, "f": ""}),
    Row("tune: out holds other files", "tune dpo $untuned $tmp/p.jsonl $tmp", "holds no tune.json", P),
    Row("tune: out, other settings", TUNE_DPO, "a tuning run with other settings", {**P, "out/tune.json": OTHER_RUN}),
    Row("tune: out, tune.json damaged", TUNE_DPO, "is not readable", {**P, "out/tune.json": "{"}),
    Row("tune: lr 0", TUNE_DPO + " --lr 0", "--lr must be a finite number > 0", P),
    Row("tune: beta nan", TUNE_DPO + " --beta nan", "--beta must be", P),
    Row("tune: sft has no beta", TUNE_SFT + " --beta 1", "unrecognized arguments", P),
    Row("tune: zero steps", TUNE_DPO + " --max-steps 0", "--max-steps must be >= 1", P),
    Row("tune: zero epochs", TUNE_DPO + " --epochs 0", "--epochs must be", P),
    Row("tune: batch 0", TUNE_DPO + " --batch-size 0", "--batch-size must be >= 1", P),
    Row("tune: warmup 1", TUNE_DPO + " --warmup 1", "--warmup is a fraction", P),
    Row("tune: over the context", TUNE_DPO + " --max-length 5000", "exceeds the 1024-token", P),
    Row("tune: lora rank 0", TUNE_DPO + " --lora --lora-r 0", "--lora-r must be >= 1", P),
    Row("tune: scheduler typo", TUNE_DPO + " --scheduler cosin", "unknown --scheduler 'cosin'", P),
    Row("tune: precision typo", TUNE_DPO + " --precision fp8", "unknown --precision 'fp8'", P),
    Row("tune: device typo", TUNE_DPO + " --device gpu", "--device must be auto, cpu or cuda", P),
    pytest.param(Row("tune: cuda on a CPU machine", TUNE_DPO + " --device cuda", "'cuda' does", P), marks=ON_CPU_ONLY),
    Row("tune: indexed pair, one response", TUNE_DPO, "a list of two texts", {"p.jsonl": INDEXED(["a"], 0)}),
    Row("tune: indexed pair, index 2", TUNE_DPO, "0 or 1, the index", {"p.jsonl": INDEXED(["a", "b"], 2)}),
    Row("tune: chat rows, no template", TUNE_SFT, "has no chat template", {"p.jsonl": MESSAGES}),
    # w2s prefs
    Row("prefs: no model", "prefs", "required: model, out"),
    Row("prefs: unknown task", PREFS + " --task gsm8k", "unknown task 'gsm8k'"),
    Row("prefs: label typo", PREFS + " --label best", "unknown --label 'best'"),
    Row("prefs: limit 0", PREFS + " --limit 0", "--limit must be >= 1"),
    Row("prefs: batch 0", PREFS + " --batch-size 0", "--batch-size must be >= 1"),
    Row("prefs: out under a new dir", PREFS.replace("$tmp/p.jsonl", "$tmp/f/new/p.jsonl"), "is a file", {"f": ""}),
    Row("prefs: out a directory", "prefs $strong $tmp --data $imdb --gold $gold", "is a directory; give a file name"),
    Row("prefs: out under a file", "prefs $strong $tmp/f/p.jsonl --data $imdb --gold $gold", "is a file", {"f": ""}),
    Row("prefs: no data file", PREFS + " --data $tmp/none.jsonl", "does not exist"),
    Row("prefs: data lacks fields", PREFS + " --data $tmp/d.jsonl", "none of the fields", {"d.jsonl": lines({"a": 1})}),
    Row("prefs: model dir missing", "prefs $tmp/none $tmp/p.jsonl --data $imdb --gold $gold", "does not exist"),
    Row("prefs: gold a language model", PREFS + " --gold $strong", "is a language model"),
    Row("prefs: gold no weights", PREFS + " --gold $tmp/model", "no weights", setup=model_copy("*.safe*")),
    Row("prefs: temperature 0", PREFS + " --temperature 0", "temperature must be > 0"),
    Row("prefs: over the context", PREFS + " --max-new-tokens 5000", "exceeds the 1024-token"),
    Row("prefs: unknown task option", PREFS + " --set colour=1", "unknown key tasks.imdb.colour"),
    Row("prefs: --set without =", PREFS + " --set colour", "expected KEY=VALUE"),
    Row("prefs: template without {prompt}", PREFS + " --template Hi", "has no {prompt} placeholder"),
    Row("prefs: device typo", PREFS + " --device gpu", "unknown device 'gpu'"),
    Row("prefs: dtype typo", PREFS + " --dtype fp8", "unknown dtype 'fp8'"),
    # w2s toy-models
    Row("toy-models: out under a file", "toy-models $tmp/f/toy", "cannot be created", {"f": ""}),
    Row("toy-models: out is a file", "toy-models $tmp/f", "is a file, not a directory", {"f": ""}),
    Row("toy-models: no data", "toy-models $tmp/toy --data $tmp/none", "not found; run from the project root"),
    Row("toy-models: zero scale", "toy-models $tmp/toy --scale 0", "--scale must be a number > 0"),
    Row("toy-models: nan scale", "toy-models $tmp/toy --scale nan", "--scale must be a number > 0"),
    # w2s train
    Row("train: nothing to train", "train", "required: WHAT"),
    Row("train: tokenizer without text", "train tokenizer $tmp/t --text $tmp/none.jsonl", "does not exist"),
    Row("train: tokenizer out is a file", "train tokenizer $tmp/f --text $imdb", "is a file", {"f": ""}),
    Row("train: lm tokenizer missing", "train lm $tmp/m --tokenizer $tmp/none --text $imdb", "is not a directory"),
    Row("train: lm heads", "train lm $tmp/m --tokenizer $strong --text $imdb --dim 30 --heads 4", "a multiple of"),
    Row("train: lm zero steps", "train lm $tmp/m --tokenizer $strong --text $imdb --steps 0", "--steps must be >= 1"),
    Row("train: nan lr", SENTIMENT + " --lr nan", "--lr must be"),
    Row("train: negative l2", SENTIMENT + " --l2 -1", "--l2 must be a number >= 0"),
    Row("train: held-out 1", SUMMARY_REWARD + " --held-out 1", "--held-out"),
    Row("train: reward no tokenizer", "train summary-reward $tmp/m --tokenizer $tmp/none --data $imdb", "not a dir"),
    Row("train: reward no data", "train summary-reward $tmp/m --tokenizer $strong --data $tmp/none", "does not exist"),
    Row("train: reward data not posts", SUMMARY_REWARD, "need text fields subreddit, title, post, reference_summary"),
    Row("train: reward too few posts", SUMMARY_REWARD.replace("$imdb", "$tmp/p.jsonl"), "too few", {"p.jsonl": POST}),
    Row("train: reward negative l2", SUMMARY_REWARD + " --l2 -0.5", "--l2 must be a number >= 0"),
    Row("train: reward zero steps", SUMMARY_REWARD + " --steps 0", "--steps must be >= 1"),
    # w2s reproduce
    Row("reproduce: no recipe", "reproduce $tmp/none.yaml", "not found; give a recipe file"),
    Row("reproduce: not YAML", "reproduce $tmp/r.yaml", "cannot read recipe", {"r.yaml": "a: [\n"}),
    Row("reproduce: unknown key", "reproduce $tmp/r.yaml", "unknown key 'zo'", {"r.yaml": "recipe: r\nzo: z\n"}),
    Row(
        "reproduce: step refers to a later one",
        "reproduce $tmp/r.yaml --dry-run",
        "refers to $${b}, which no earlier step builds",
        {"r.yaml": "recipe: r\nsteps:\n- {name: a, run: 'train lm $${out} --tokenizer $${b}'}\nstudy: {}\n"},
    ),
    Row(
        "reproduce: study refers to no step",
        "reproduce $tmp/r.yaml",
        "refers to $${m}, which no step builds",
        {"r.yaml": "recipe: r\nsteps: []\nstudy: {study: s, models: {a: '$${m}'}}\n"},
    ),
    Row(
        "reproduce: study invalid",
        "reproduce $tmp/r.yaml --dry-run",
        "tasks is empty",
        {"r.yaml": "recipe: r\nsteps: []\nstudy: {study: s}\n"},
    ),
    # w2s report
    Row("report: no such runs dir", "report $tmp/none", "does not exist"),
    Row("report: no cells", "report $tmp", "no cells under"),
    Row("report: nothing finished", "report $tmp/runs", "no finished cells", setup=run_copy(SUMMARY)),
    Row("report: summary damaged", "report $tmp/runs", "not readable", {f"runs/{CELL}/{SUMMARY}": "{"}, run_copy()),
    Row("report: --out under a file", "report $runs --out $tmp/f/report", "cannot be created", {"f": ""}),
    # w2s regress
    Row("regress: no such summary", "regress $tmp/none --baseline $tmp/b.json", "does not exist"),
    Row("regress: no summaries", "regress $tmp --baseline $tmp/b.json", "no summary.json under"),
    Row("regress: no baseline", "regress $runs --baseline $tmp/b.json", "create it with --update"),
    Row("regress: baseline not JSON", "regress $runs --baseline $tmp/b.json", "not readable JSON", {"b.json": "{"}),
    Row("regress: baseline no cells", "regress $runs --baseline $tmp/b.json", 'no "cells"', {"b.json": "{}"}),
    Row(
        "regress: baseline entry",
        "regress $runs --baseline $tmp/b.json",
        "needs a number for mean",
        {"b.json": json.dumps({"cells": {CELL: {"gold": {"mean": "x", "ci_low": 0, "ci_high": 1}}}})},
    ),
    Row("regress: negative tolerance", "regress $runs --baseline $tmp/b.json --tolerance -1", "--tolerance must"),
    Row("regress: negative ci factor", "regress $runs --baseline $tmp/b.json --ci-factor -2", "--ci-factor must"),
    Row("regress: two rules", "regress $runs --baseline $tmp/b.json --ci-factor 2 --tolerance 1", "not both"),
    Row(
        "regress: entry with two rules",
        "regress $runs --baseline $tmp/b.json",
        "has both tolerance and ci_factor",
        {"b.json": json.dumps({"cells": {CELL: {"gold": TWO_RULES}}})},
    ),
    Row("regress: update under a file", "regress $runs --baseline $tmp/f/b.json --update", "is a file", {"f": ""}),
    Row("regress: update into a dir", "regress $runs --baseline $tmp --update", "is a directory"),
    # w2s winrate
    Row("winrate: no file", "winrate $tmp/a.json", "does not exist"),
    Row("winrate: not JSON", "winrate $tmp/a.json", "not readable JSON", {"a.json": "["}),
    Row("winrate: not a list", "winrate $tmp/a.json", "must be a JSON list of objects", {"a.json": "{}"}),
    Row("winrate: lacks fields", "winrate $tmp/a.json", "lacks output_1", {"a.json": annotations(output_1=None)}),
    Row("winrate: two models", "winrate $tmp/a.json", "mixes models", {"a.json": annotations(generator_2=str)}),
    Row("winrate: one annotation", "winrate $tmp/a.json", "need 2 to 805", {"a.json": annotations(1)}),
    Row("winrate: bad preference", "winrate $tmp/a.json", "number in [1, 2]", {"a.json": annotations(preference="x")}),
    Row("winrate: LC file missing", "winrate $annotations --df-gamed $tmp/none.csv", "'$tmp/none.csv' does not exist"),
]  # fmt: skip


@dataclass
class World:
    """The session's fixtures: placeholder values, and every directory a row could touch."""

    names: dict[str, str]
    roots: list[Path]


@pytest.fixture(scope="session")
def world(zoo, gold_paths, tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "imdb.jsonl").write_text(DATA)
    (root / "annotations.json").write_text(annotations())
    config = study_dict(zoo, gold_paths, root) | {"seeds": [0], "limit": 2, "batch_size": 2}
    config["tasks"]["imdb"].pop("tuned")
    config["tasks"]["imdb"]["sample"]["max_new_tokens"] = 4
    del config["tasks"]["tldr"]
    config["methods"] = ["plain", {"cbs": {"width": 2, "successors": 2, "chunk_length": 2}}]
    models = config["models"]
    config["models"] = {name: {"path": path} for name, path in models.items()}  # so rows can set models.<name>.<key>
    (root / "study.yaml").write_text(yaml.safe_dump(config))
    Runner(Study(copy.deepcopy(config)), progress=False).run()
    names = models | {
        "config": str(root / "study.yaml"),
        "runs": str(root / "runs"),
        "imdb": str(root / "imdb.jsonl"),
        "annotations": str(root / "annotations.json"),
        "gold": str(gold_paths["sentiment"]),
        "tldr": "tasks.tldr.strong=[strong] tasks.tldr.guide=g",  # overrides that add a tldr task to $config
    }
    return World(names, [root, zoo.paths["strong"].parent, gold_paths["sentiment"].parent])


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under the roots: directories with their modification time, files with size, time and contents."""
    state = {}
    for root in roots:
        for path in [root, *root.rglob("*")]:
            info = path.lstat()
            if path.is_dir():
                state[str(path)] = ("dir", info.st_mtime_ns)
            else:
                state[str(path)] = ("file", info.st_size, info.st_mtime_ns, hashlib.sha256(path.read_bytes()).digest())
    return state


def prepare(row: Row, world: World, tmp: Path) -> tuple[list[str], str]:
    """The row's files written, its argv and expected message with the placeholders filled."""
    names = world.names | {"tmp": str(tmp)}
    if row.setup is not None:
        row.setup(tmp, names)
    for name, content in row.files.items():
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):  # a directory, left empty
            path.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(Template(content).substitute(names))
    return shlex.split(Template(row.argv).substitute(names)), Template(row.expect).substitute(names)


def no_weights(*args, **kwargs):
    raise AssertionError("model weights were loaded: bad input must be refused before any model loads")


def refuse(row: Row, world: World, tmp: Path, capsys, monkeypatch, extra: tuple[str, ...] = ()) -> None:
    """Run the row in this process and check the refusal: exit 2, one line with the message, nothing changed."""
    argv, expect = prepare(row, world, tmp)
    monkeypatch.chdir(tmp)
    monkeypatch.setattr("harness.backends.hf.from_pretrained", no_weights)
    before = snapshot(tmp, *world.roots)
    code, _, err = w2s(capsys, *argv, *extra)
    assert code == 2, f"exit code {code}, stderr: {err}"
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line:\n{err}"
    assert expect in err, f"expected {expect!r} in: {err}"
    after = snapshot(tmp, *world.roots)
    changed = sorted(set(before) ^ set(after) | {p for p in before.keys() & after.keys() if before[p] != after[p]})
    assert not changed, f"the refused command changed what was on disk: {changed[:5]}"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.what)
def test_bad_input_is_one_line_with_exit_code_2_and_changes_nothing(row, world, tmp_path, capsys, monkeypatch):
    refuse(row, world, tmp_path, capsys, monkeypatch)


RUN_ROWS = [r for r in ROWS if isinstance(r, Row) and r.argv.startswith("run $")]


@pytest.mark.parametrize("row", RUN_ROWS, ids=lambda r: r.what)
def test_a_dry_run_refuses_what_the_run_refuses(row, world, tmp_path, capsys, monkeypatch):
    refuse(row, world, tmp_path, capsys, monkeypatch, extra=("--dry-run",))


def test_the_suite_covers_every_command_with_enough_rows():
    from harness.cli import COMMANDS

    rows = [r.values[0] if not isinstance(r, Row) else r for r in ROWS]
    assert len(rows) >= 40
    assert set(COMMANDS) <= {r.argv.split()[0] for r in rows if r.argv}, "a command without bad-input rows"


@pytest.mark.parametrize("what", ["run: no such GPU"])
def test_a_real_process_prints_the_same_single_line(what, world, tmp_path):
    row = next(r for r in ROWS if isinstance(r, Row) and r.what == what)
    argv, expect = prepare(row, world, tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and expect in done.stderr, done.stderr


def test_a_dry_run_checks_everything_and_loads_no_weights(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("harness.backends.hf.from_pretrained", no_weights)
    code, out, err = w2s(capsys, "run", world.names["config"], "--dry-run")
    assert code == 0, err
    assert "2 examples from" in out and "2/2 samples done" in out and "every check passed" in out


def test_a_full_disk_or_a_forbidden_path_is_one_line(world, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "samples.jsonl"))

    monkeypatch.setattr("harness.runner.Runner.run_cell", full)
    code, _, err = w2s(capsys, "run", world.names["config"], f"out={tmp_path / 'runs'}")
    assert code == 2 and err.count("\n") == 1
    assert "No space left on device" in err and "free some space" in err and "finished work is kept" in err
    denied = OSError(errno.EACCES, "Permission denied", "/data/x")
    assert user_facing(denied) == "Permission denied (/data/x); check its permissions or choose another path, " + (
        "then run again (finished work is kept)"
    )
    out_of_memory = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "lower batch_size" in user_facing(out_of_memory)


@pytest.mark.parametrize(
    "bug", [KeyError("x"), OSError(errno.ENOENT, "No such file or directory", "x"), RuntimeError("shape mismatch")]
)
def test_a_bug_keeps_its_traceback(bug, world, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr("harness.study.Study.cells", broken)
    assert user_facing(bug) is None
    with pytest.raises(type(bug)):
        w2s(capsys, "run", world.names["config"], "--dry-run")
