"""A study: the config file that names tasks, models, guides, methods and seeds, and the grid of cells it expands to.

Everything a config can get wrong (a missing or unreadable file, an unknown key, a wrong type, a name that refers
to nothing, a method without the guide it needs, a task without cells) is found here, before any model or dataset
loads; what the files themselves hold (data rows, model directories, tokenizers, devices, cells already on disk) is
checked next, by `Runner.preflight`, still before any weights load.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.configs import build, identity_fields, option
from harness.errors import UsageError, require
from harness.identity import fingerprint
from harness.judges import Judge, make_judge
from harness.methods import Method, make_method, strong_template
from harness.scorers import Scorer
from harness.types import DTYPE_NAMES, APIModelSpec, ModelSpec, Template, local_dir
from tasks import task_class
from tasks.base import TaskConfig, is_local

BACKENDS = ("hf", "openai")


@dataclass
class ModelEntry:
    path: str | None = option(None, "hub id or local directory (backend hf)")
    backend: str = option("hf", "hf: a Hugging Face model loaded here; openai: a model behind an OpenAI-compatible API")
    base_url: str | None = option(None, "backend openai: the endpoint, e.g. https://api.openai.com/v1")
    model: str | None = option(None, "backend openai: the model's name on that server")
    api_key_env: str | None = option(
        None, "backend openai: the environment variable holding the API key (the key is never written); null: none"
    )
    concurrency: int = option(8, "backend openai: requests in flight at once")
    timeout: float = option(60.0, "backend openai: seconds before a request is abandoned and retried")
    max_retries: int = option(5, "backend openai: retries with backoff on rate limits, server errors and timeouts")
    dtype: str | None = option(None, "auto, float32, bfloat16 or float16; default: the study's dtype")
    device: str | None = option(None, "cpu, cuda, cuda:1; default: the study's device")
    device_map: str | None = option(None, "e.g. auto, to shard a large model over all GPUs")
    trust_remote_code: bool = option(False, "run code shipped with the checkpoint")
    revision: str | None = option(None, "hub revision (branch, tag or commit)")
    chat: bool = option(False, "wrap prompts in the model's chat template")
    system: str | None = option(
        None,
        'system message sent before each prompt in the chat template (chat: true): null sends none, "" an empty '
        "one, as the paper's code does for Llama-2-chat, Llama-3-Instruct, zephyr and mistral-sft",
    )
    prompt_special_tokens: bool = option(
        True,
        "add the tokenizer's special tokens (BOS) to a prompt outside a chat template (chat: false); the paper's code "
        "adds none (false)",
    )
    chat_template: str | None = option(
        None, "chat template replacing the tokenizer's own: Jinja text, or the path of a file holding it"
    )


@dataclass
class GuideEntry:
    tuned: str = option(help="the tuned small model (a name from `models`)")
    untuned: str = option(help="its untuned version (a name from `models`)")
    beta: float = option(1.0, "scale of the implicit reward; rankings do not depend on it")
    retokenize: bool = option(False, "score re-tokenised text even with a shared vocabulary, as the paper's code")
    eos_at_budget: bool = option(
        False,
        "score a response cut by max_new_tokens with the guide's EOS appended, in the search (best-of-N, CBS's last "
        "chunk) and in the reported guide score, as the paper's code does (true); false: only a response that ended "
        "(EOS or a stop string) scores EOS",
    )


@dataclass
class StudyConfig:
    study: str = option(help="the study's name")
    out: str | None = option(None, "output directory; default runs/<study>")
    models: dict[str, ModelEntry] = option({}, "model name -> where it comes from (a path alone will do)")
    guides: dict[str, GuideEntry] = option({}, "guide name -> its tuned and untuned models")
    tasks: dict[str, Any] = option({}, "task name (imdb, tldr) -> its options")
    methods: list[Any] = option(["plain"], "each a name (plain) or {name: {parameter: value}}")
    judges: dict[str, Any] = option(
        {},
        "judge name -> {kind: openai | reward_model, ...} (see harness/judges.py); a task judges its finished cells "
        "with those it names under tasks.<task>.judges",
    )
    seeds: list[int] = option([0], "one cell per seed; each prompt's seed derives from it and the prompt id")
    limit: int | None = option(None, "examples per task, the first ones; null: all")
    batch_size: int = option(8, "prompts decoded together")
    device: str | None = option(None, "every model's device unless it names one; default: cuda if available")
    dtype: str = option("auto", "every model's dtype unless it names one")


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a task, a strong model, a method and a seed, with its own output directory."""

    task: str
    strong: str
    method: Method
    seed: int
    dir: Path

    def describe(self) -> dict:
        return {
            "task": self.task,
            "strong": self.strong,
            "method": self.method.name,
            "label": self.method.label(),
            "slug": slug(self.method.label()),
            "params": asdict(self.method),
            "seed": self.seed,
        }

    @property
    def title(self) -> str:
        return f"{self.task} | {self.strong} | {self.method.label()} | seed {self.seed}"


def slug(label: str) -> str:
    """A directory name for a method label: "cbs(W=4,K=4,L=5)" -> "cbs-W4-K4-L5"."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label.replace("=", "")).strip("-")


class Study:
    """A validated study: its tasks, methods and cells, and what each cell depends on."""

    def __init__(self, raw: dict, check_files: bool = True):
        """`check_files=False` checks the config alone, for plans of models not built yet (w2s reproduce --dry-run)."""
        self.raw = raw
        self.check_files = check_files
        models = raw.get("models")
        if isinstance(models, dict):  # `name: path` is shorthand for `name: {path: path}`
            raw["models"] = {k: {"path": v} if isinstance(v, str) else v for k, v in models.items()}
        self.config: StudyConfig = build(StudyConfig, raw, "")
        c = self.config
        require(c.seeds, "seeds is empty; give at least one seed")
        require(len(set(c.seeds)) == len(c.seeds), f"seeds lists a seed twice ({c.seeds}); list each once")
        require(c.limit is None or c.limit >= 1, f"limit must be >= 1 or null, got {c.limit}")
        require(c.batch_size >= 1, f"batch_size must be >= 1, got {c.batch_size}")
        require(c.dtype in DTYPE_NAMES, f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {c.dtype!r}")
        require(c.tasks, "tasks is empty; name at least one task (imdb, tldr)")
        self.out = Path(c.out or f"runs/{c.study}")
        for name in c.models:  # model names become directory names
            require(
                re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) is not None,
                f"model name {name!r} must be letters, digits, '_', '.' or '-' (it names run directories); "
                "put the hub id or path under `path`",
            )
        self.specs = {name: self._spec(name, e) for name, e in c.models.items()}
        for name, g in c.guides.items():
            for role in ("tuned", "untuned"):
                model = self._model(getattr(g, role), f"guides.{name}.{role}")
                require(
                    isinstance(self.specs[model], ModelSpec),
                    f"guides.{name}.{role} names {model}, a model behind an API; a guide's models must be loaded "
                    "here (backend hf), since the guide reads their log-probabilities",
                )
            require(0 < g.beta < math.inf, f"guides.{name}.beta must be a finite number > 0, got {g.beta}")
        self.methods = self._methods(c.methods, "methods")
        self.judges: dict[str, Judge] = {name: make_judge(name, raw, c.device) for name, raw in c.judges.items()}
        self.task_methods: dict[str, list[Method]] = {}
        self.gold: dict[str, Scorer | None] = {}
        self.tasks = {name: self._task(name, options) for name, options in c.tasks.items()}
        with_tuned = [
            name for name, methods in self.task_methods.items() if any(uses(m, "tuned_model") for m in methods)
        ]
        require(
            not with_tuned or any(self.tasks[name].config.tuned for name in with_tuned),
            "method 'tuned' needs tasks.<task>.tuned: {strong model: its checkpoint tuned directly on the task}",
        )
        for name in self.tasks:
            require(
                any(cell.task == name for cell in self.cells()),
                f"tasks.{name} has no cells: its only method is 'tuned' and none of its strong models has a tuned "
                f"checkpoint; add one under tasks.{name}.tuned or give the task other methods",
            )

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] = ()) -> Study:
        """Read a YAML config, apply `key.path=value` overrides, validate."""
        path = Path(path)
        require(path.is_file(), f"config file {str(path)!r} not found; give the path of a YAML study config")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(f"cannot read config {str(path)!r}: {first}") from None
        require(isinstance(raw, dict), f"config {str(path)!r} must be a YAML mapping of keys to values")
        for item in overrides:
            apply_override(raw, item)
        return cls(raw)

    def cells(self) -> list[Cell]:
        """The grid, strong model by strong model so each is loaded once. Method `tuned` has cells only where the
        task names the strong model's directly tuned checkpoint; method `guide` has one cell per task and seed, its
        strong model being the guide's tuned model."""
        cells = []
        for name, task in self.tasks.items():
            methods = self.task_methods[name]
            for strong in task.config.strong:
                for method in methods:
                    if uses(method, "guide_model") or (uses(method, "tuned_model") and strong not in task.config.tuned):
                        continue
                    cells += [self._cell(name, strong, method, seed) for seed in self.config.seeds]
            for method in (m for m in methods if uses(m, "guide_model")):
                tuned = self.config.guides[task.config.guide].tuned
                cells += [self._cell(name, tuned, method, seed) for seed in self.config.seeds]
        return cells

    def _cell(self, task: str, strong: str, method: Method, seed: int) -> Cell:
        return Cell(task, strong, method, seed, self.out / task / strong / slug(method.label()) / f"seed-{seed}")

    def identity(self, cell: Cell) -> dict:
        """Everything a cell's samples depend on; a cell resumed under different settings is refused. Local models
        and data are named by their content too (harness.identity.fingerprint), the gold model by where it runs."""
        task = self.tasks[cell.task].config
        guide = self.config.guides.get(task.guide) if task.guide else None
        tuned = uses(cell.method, "tuned_model")
        gold = self.gold_scorer(cell.task)
        identity = {
            "task": identity_fields(task) | {"strong": None, "tuned": task.tuned.get(cell.strong) if tuned else None},
            "data": fingerprint(task.data) if is_local(task.data) else None,
            "gold": gold.identity if gold is not None else None,
            "strong": _model_identity(self.cell_model(cell)),
            "template": asdict(self.cell_template(cell)),
            "method": cell.describe()["params"] | {"name": cell.method.name},
            "seed": cell.seed,
        }
        if guide is not None:
            models = {role: _model_identity(self.specs[getattr(guide, role)]) for role in ("tuned", "untuned")}
            template = asdict(self.guide_template(cell.task))
            identity["guide"] = identity_fields(guide) | models | {"template": template}
        return identity

    def task_judges(self, task: str) -> list[Judge]:
        """The judges that compare a task's responses with its references (none for most tasks)."""
        return [self.judges[name] for name in getattr(self.tasks[task].config, "judges", [])]

    def gold_scorer(self, task: str) -> Scorer | None:
        """The task's gold scorer (built once, loaded on first use), on the study's device."""
        if task not in self.gold:
            self.gold[task] = self.tasks[task].gold_scorer(self.config.device)
        return self.gold[task]

    def cell_model(self, cell: Cell) -> ModelSpec | APIModelSpec:
        """The model a cell decodes with: the strong model, its directly tuned checkpoint for method `tuned`, or its
        untuned base checkpoint for method `urial` where the task names one."""
        task = self.tasks[cell.task].config
        if uses(cell.method, "tuned_model"):
            return self.variant_spec(cell.strong, task.tuned[cell.strong])
        if uses(cell.method, "base_model") and cell.strong in task.base:
            return self.variant_spec(cell.strong, task.base[cell.strong])
        return self.specs[cell.strong]

    def cell_template(self, cell: Cell) -> Template:
        """The prompt template of a cell's model: the guide's for method `guide`, else the strong model's, as the
        method shapes it (urial wraps it in its in-context prompt)."""
        if uses(cell.method, "guide_model"):
            return self.guide_template(cell.task)
        return strong_template(cell.method, self._template(self.tasks[cell.task].config.template, cell.strong))

    def guide_template(self, task: str) -> Template:
        config = self.tasks[task].config
        return self._template(config.guide_template, self.config.guides[config.guide].tuned)

    def _template(self, text: str, model: str) -> Template:
        """A prompt template as model `model`'s entry renders it (chat, system message, special tokens)."""
        m = self.config.models[model]
        return Template(text, chat=m.chat, system=m.system, special_tokens=m.prompt_special_tokens)

    def resolved(self) -> dict:
        """The config after overrides and defaults, as plain data (what manifests record)."""
        out = asdict(self.config)
        out["tasks"] = {name: asdict(task.config) for name, task in self.tasks.items()}
        out["methods"] = [{m.name: asdict(m)} for m in self.methods]
        for name, methods in self.task_methods.items():
            out["tasks"][name]["methods"] = [{m.name: asdict(m)} for m in methods]
        out["out"] = str(self.out)
        return out

    def _spec(self, name: str, entry: ModelEntry) -> ModelSpec | APIModelSpec:
        where = f"models.{name}"
        backends = ", ".join(BACKENDS)
        require(entry.backend in BACKENDS, f"{where}.backend must be one of {backends}, got {entry.backend!r}")
        if entry.backend == "openai":
            return self._api_spec(where, entry)
        require(entry.path is not None, f"{where}.path is required (a hub id or a local directory)")
        self._check_path(entry.path, f"{where}.path")
        require(
            entry.system is None or entry.chat,
            f"{where}.system is set but {where}.chat is false, so no chat template would send it; set chat: true or "
            "drop system",
        )
        chat_template = _chat_template(entry.chat_template, f"{where}.chat_template")
        try:
            return ModelSpec(
                entry.path,
                dtype=entry.dtype or self.config.dtype,
                device=entry.device or self.config.device,
                device_map=entry.device_map,
                trust_remote_code=entry.trust_remote_code,
                revision=entry.revision,
                chat_template=chat_template,
            )
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None

    def _api_spec(self, where: str, entry: ModelEntry) -> APIModelSpec:
        """A model behind an OpenAI-compatible completions endpoint."""
        require(entry.path is None, f"{where} has backend openai and a path; give base_url and model instead of path")
        for key in ("base_url", "model"):
            require(getattr(entry, key), f"{where}.{key} is required with backend openai")
        require(
            not entry.chat,
            f"{where}: chat: true is not available with backend openai (a completions endpoint); write the chat "
            "markup into the task's template instead",
        )
        try:
            return APIModelSpec(
                entry.base_url, entry.model, entry.api_key_env, entry.concurrency, entry.timeout, entry.max_retries
            )
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None

    def variant_spec(self, strong: str, path: str) -> ModelSpec:
        """Another checkpoint of a strong model (tuned directly, or its base), placed like the model itself (or on the
        study's device, for a model behind an API)."""
        s = self.specs[strong]
        if isinstance(s, APIModelSpec):
            return ModelSpec(path, self.config.dtype, self.config.device)
        return ModelSpec(path, s.dtype, s.device, s.device_map, s.trust_remote_code, chat_template=s.chat_template)

    def _check_path(self, path: str, where: str) -> None:
        """A model path that looks local must exist (hub ids, and what a directory holds, are checked before the run
        loads anything: Runner.preflight)."""
        local = local_dir(path)
        require(not self.check_files or local is None or local.is_dir(), f"{where}: directory {path!r} does not exist")

    def _model(self, name: str, where: str) -> str:
        require(name in self.config.models, f"{where} names model {name!r}, which `models` does not define")
        return name

    def _methods(self, entries: list[Any], where: str) -> list[Method]:
        require(entries, f"{where} is empty; list at least one method (e.g. plain)")
        methods = [self._method(m, f"{where}[{i}]") for i, m in enumerate(entries)]
        labels = [m.label() for m in methods]
        require(len(set(labels)) == len(labels), f"{where} lists the same method twice: {labels}")
        return methods

    def _method(self, entry: Any, where: str) -> Method:
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, params = next(iter(entry.items()))
            params = {} if params is None else params
            require(isinstance(params, dict), f"{where}.{name} must map parameter names to values, got {params!r}")
        else:
            raise UsageError(f"{where} must be a method name or {{name: {{parameter: value}}}}, got {entry!r}")
        try:
            return make_method(name, **params)
        except UsageError as err:
            raise UsageError(f"{where}: {err}") from None

    def _task(self, name: str, options: Any):
        where = f"tasks.{name}"
        require(
            re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name) is not None,
            f"task name {name!r} must be letters, digits, '_', '.' or '-' (it names run directories)",
        )
        kind = options.get("task") if isinstance(options, dict) else None
        cls = task_class(kind if isinstance(kind, str) else name, where)
        config: TaskConfig = build(cls.Config, options, where)
        methods = self.methods if config.methods is None else self._methods(config.methods, f"{where}.methods")
        self.task_methods[name] = methods
        require(config.strong, f"{where}.strong is empty; list the strong models to run")
        for i, strong in enumerate(config.strong):
            self._model(strong, f"{where}.strong[{i}]")
        for key in ("tuned", "base"):
            for strong, path in getattr(config, key).items():
                self._model(strong, f"{where}.{key}")
                self._check_path(path, f"{where}.{key}.{strong}")
        if config.guide is not None:
            require(config.guide in self.config.guides, f"{where}.guide names {config.guide!r}, which `guides` lacks")
        judges = getattr(config, "judges", [])
        for i, judge in enumerate(judges):
            require(judge in self.judges, f"{where}.judges[{i}] names {judge!r}, which the study's `judges` lacks")
        require(len(set(judges)) == len(judges), f"{where}.judges lists the same judge twice: {judges}")
        for m in methods:
            require(
                not m.needs_guide or config.guide is not None,
                f"method {m.label()} needs a guide but {where} has none; set {where}.guide",
            )
            api = [s for s in config.strong if isinstance(self.specs[s], APIModelSpec)]
            require(
                m.name != "eft" or not api,
                f"method eft changes every next-token distribution, which {api[0] if api else ''} behind an API does "
                f"not expose; drop eft from {where}'s methods or use cbs or bon there",
            )
        for key in ("template", "guide_template"):
            require("{prompt}" in getattr(config, key), f"{where}.{key} has no {{prompt}} placeholder; add one")
        try:
            config.sample.build()
        except UsageError as err:
            raise UsageError(f"{where}.sample: {err}") from None
        if is_local(config.data) and self.check_files:
            data = Path(config.data).expanduser()
            require(not data.is_dir(), f"{where}.data {config.data!r} is a directory; give the data file in it")
            require(data.is_file(), f"{where}.data file {config.data!r} does not exist")
        self._check_path(config.gold, f"{where}.gold")
        require(config.gold_batch_size >= 1, f"{where}.gold_batch_size must be >= 1, got {config.gold_batch_size}")
        require(
            config.gold_dtype in DTYPE_NAMES,
            f"{where}.gold_dtype must be one of {', '.join(DTYPE_NAMES)}, got {config.gold_dtype!r}",
        )
        return cls(config)


def uses(method: Method, model: str) -> bool:
    """Whether a method decodes with another model than the strong one: "tuned_model" or "guide_model"."""
    return getattr(method, f"uses_{model}", False)


def _model_identity(spec: ModelSpec | APIModelSpec) -> dict:
    """A model spec and the content of a local one, without where it runs: moving a study to another device (or a
    served model to another server) does not change its cells."""
    if isinstance(spec, APIModelSpec):
        return {"backend": "openai", "model": spec.model}
    return asdict(spec) | {"device": None, "device_map": None, "fingerprint": fingerprint(spec.path)}


def _chat_template(value: str | None, where: str) -> str | None:
    """A chat template given as Jinja text (it holds "{%" or "{{") or as the path of a file holding it."""
    if value is None or "{%" in value or "{{" in value:
        return value
    path = Path(value).expanduser()
    require(path.is_file(), f"{where}: {value!r} is neither Jinja text nor an existing file; give one or the other")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{where}: cannot read {value!r} ({err})") from None


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in nested config data; the value is read as YAML (4, 0.5, null, [0, 1], text)."""
    key, sep, text = item.partition("=")
    require(bool(sep) and bool(key.strip()), f"override {item!r} must look like key.path=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            require(
                part.isdigit() and int(part) < len(node), f"override {key}: no item {part} in {'.'.join(parts[:i])}"
            )
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
        require(isinstance(node, dict | list), f"override {key}: {'.'.join(parts[: i + 1])} is not a section")
    last = parts[-1]
    if isinstance(node, list):
        require(last.isdigit() and int(last) < len(node), f"override {key}: no item {last}")
        node[int(last)] = value
    else:
        node[last] = copy.deepcopy(value)
