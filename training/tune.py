"""Fine-tune a causal language model with trl (SFT or DPO), optionally through a LoRA adapter, resumably.

`prepare` checks everything a user can get wrong (settings, output directory, data columns, the model's files,
context and device) and loads no weights; `train` then runs trl's trainer. The output directory holds the tuned
model (weights and tokenizer, merged when LoRA was used, so the studies load it like any other model), the adapter
alone under `adapter/` for LoRA, `tune.json` (the settings, the training log and whether it finished) and, while
training, `checkpoints/`. Killed at any point, the same command resumes from the last complete checkpoint; run
once more after it finished, it does nothing. The same directory with other settings is refused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError, require
from harness.identity import fingerprint
from harness.preflight import check_device, check_output_dir, inspect_model, make_output_dir
from harness.types import ModelSpec
from training.data import check_rows, indexed_pairs, is_conversational, load_rows

RECORD = "tune.json"  # the settings, the training log and the state of a tuning run, in its output directory
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
KINDS = ("sft", "dpo")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TuneSettings:
    """Everything the tuned weights depend on (the run-only options, like how often to log, are in `RunOptions`)."""

    kind: str  # "sft" or "dpo"
    model: str  # hub id or local directory of a causal LM
    data: str  # local .jsonl/.json(.gz)/.parquet file or hub dataset id
    split: str = "train"
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    lr: float = 2e-5
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    beta: float = 0.1  # DPO only
    seed: int = 0
    warmup: float = 0.0  # fraction of the steps
    weight_decay: float = 0.0
    scheduler: str = "linear"
    lora: bool = False
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ()  # empty: peft's default modules for the architecture
    precision: str = "auto"  # bf16 where the device supports it, else fp32
    device: str = "auto"  # cuda where there is one, else cpu
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class RunOptions:
    """How the run goes, not what it makes."""

    out: Path
    save_steps: int = 100
    logging_steps: int = 10
    keep_checkpoints: bool = False
    progress: bool = True


@dataclass
class Job:
    """A checked tuning run: its settings, the rows it trains on and what `prepare` learned about the model."""

    settings: TuneSettings
    run: RunOptions
    rows: list[dict]
    columns: tuple[str, ...]
    spec: ModelSpec
    bf16: bool
    identity: dict[str, Any]
    finished: bool  # the output directory already holds this very model


def prepare(settings: TuneSettings, run: RunOptions) -> Job:
    """Check the settings, the output directory, the data and the model (files, context, device); load no weights."""
    s = settings
    require(s.kind in KINDS, f"unknown tuning kind {s.kind!r}; choose one of {', '.join(KINDS)}")
    _check_numbers(s, run)
    check_output_dir(run.out, "output directory", "give another OUT")
    rows = load_rows(s.data, s.split)
    if s.kind == "dpo":
        rows = indexed_pairs(rows, s.data)
    columns = check_rows(s.kind, rows, s.data)
    device = _device(s.device)
    require(s.precision in PRECISIONS, f"unknown --precision {s.precision!r}; choose one of {', '.join(PRECISIONS)}")
    bf16 = _bf16(s.precision, device)
    spec = ModelSpec(s.model, dtype="bfloat16" if bf16 and s.lora else "float32", device=device)
    files = inspect_model(spec)  # config, weights and tokenizer present (local), or reachable (hub)
    kinds = files.config.architectures or []
    require(
        not kinds or any(k.endswith(("ForCausalLM", "LMHeadModel")) for k in kinds),
        f"model {s.model} is not a causal language model ({', '.join(kinds)}); `w2s tune` tunes language models",
    )
    from harness.backends.hf import context_length

    context = context_length(files.config)
    require(
        context is None or s.max_length <= context,
        f"--max-length {s.max_length} exceeds the {context}-token context of {s.model}; give --max-length {context} "
        "or less",
    )
    if is_conversational(rows, columns):
        require(
            files.tokenizer.chat_template is not None,
            f"data {s.data!r} holds chat messages but {s.model} has no chat template; give plain-text rows or a model "
            "with a chat template",
        )
    if s.lora:
        import importlib.util

        require(
            importlib.util.find_spec("peft") is not None,
            "--lora needs peft, which is not installed; run make setup (or pip install -c constraints.txt peft)",
        )
    identity = {  # as tune.json stores it (JSON types), to compare with a stored one
        "settings": json.loads(json.dumps(dataclasses.asdict(s))),
        "model_content": fingerprint(s.model),
        "data_content": fingerprint(s.data),
        "device": device,
        "bf16": bf16,
    }
    return Job(s, run, rows, columns, spec, bf16, identity, _check_record(run.out, identity))


def _check_numbers(s: TuneSettings, run: RunOptions) -> None:
    """Settings trl would only reject (or silently misuse) once training starts."""
    finite = lambda x: isinstance(x, int | float) and math.isfinite(x)  # noqa: E731
    require(finite(s.lr) and s.lr > 0, f"--lr must be a finite number > 0, got {s.lr}")
    require(finite(s.epochs) and s.epochs > 0, f"--epochs must be a finite number > 0, got {s.epochs}")
    require(s.max_steps is None or s.max_steps >= 1, f"--max-steps must be >= 1, got {s.max_steps}")
    for name, value in [("--batch-size", s.batch_size), ("--grad-accum", s.grad_accum)]:
        require(value >= 1, f"{name} must be >= 1, got {value}")
    require(s.max_length >= 2, f"--max-length must be >= 2 tokens, got {s.max_length}")
    require(finite(s.beta) and s.beta > 0, f"--beta must be a finite number > 0, got {s.beta}")
    require(finite(s.warmup) and 0 <= s.warmup < 1, f"--warmup is a fraction of the steps in [0, 1), got {s.warmup}")
    require(finite(s.weight_decay) and s.weight_decay >= 0, f"--weight-decay must be >= 0, got {s.weight_decay}")
    require(s.lora_r >= 1, f"--lora-r must be >= 1, got {s.lora_r}")
    require(finite(s.lora_alpha) and s.lora_alpha > 0, f"--lora-alpha must be > 0, got {s.lora_alpha}")
    require(
        finite(s.lora_dropout) and 0 <= s.lora_dropout < 1, f"--lora-dropout must be in [0, 1), got {s.lora_dropout}"
    )
    require(run.save_steps >= 1, f"--save-steps must be >= 1, got {run.save_steps}")
    require(run.logging_steps >= 1, f"--logging-steps must be >= 1, got {run.logging_steps}")
    from transformers import SchedulerType

    names = [t.value for t in SchedulerType]
    require(s.scheduler in names, f"unknown --scheduler {s.scheduler!r}; choose one of {', '.join(names)}")


def _device(name: str) -> str:
    """cpu or cuda: the one given (which must exist), or cuda where there is one."""
    import torch

    require(name in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(name)
    return name


def _bf16(precision: str, device: str) -> bool:
    """Whether to train in bfloat16 mixed precision: asked for, or `auto` on a GPU that supports it."""
    import torch

    supported = device == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16":
        require(
            supported or device == "cpu",
            "--precision bf16 needs a GPU with bfloat16 support (or --device cpu); use --precision fp32",
        )
        return True
    return precision == "auto" and supported


def _check_record(out: Path, identity: dict[str, Any]) -> bool:
    """Whether `out` already holds this run finished; refuses a directory of another run or of other files."""
    record = Path(out) / RECORD
    if not record.is_file():
        require(
            not Path(out).is_dir() or not any(Path(out).iterdir()),
            f"output directory {str(out)!r} is not empty and holds no {RECORD}, so `w2s tune` did not make it; give "
            "a new or empty directory",
        )
        return False
    try:
        found = json.loads(record.read_text(encoding="utf-8"))
        old = found["identity"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise UsageError(f"{record} is not readable ({err!r}); delete {out} to start afresh") from None
    if old != identity:
        flat = lambda d: {**d.get("settings", {}), **{k: v for k, v in d.items() if k != "settings"}}  # noqa: E731
        before, now = flat(old), flat(identity)
        key = next(k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k))
        raise UsageError(
            f"output directory {str(out)!r} holds a tuning run with other settings ({key} differs); give another OUT, "
            "or delete it to start afresh"
        )
    return found.get("state") == "finished"


def last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint (its trainer state written last, so a save cut short by a kill is skipped)."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file() and p.name[11:].isdigit()]
    return max(done, key=lambda p: int(p.name[11:]), default=None)


def train(job: Job, log=print, callbacks: Sequence = ()) -> Path:
    """Train (or resume, or find finished) the job; return the output directory holding the tuned model.
    `callbacks` are extra transformers TrainerCallbacks (to watch or stop the run)."""
    s, out = job.settings, Path(job.run.out)
    if job.finished:
        log(f"{out} already holds this tuned model; nothing to do")
        return out
    make_output_dir(out, "output directory", "give another OUT")
    _write_record(out, job, "training", [])
    trainer = _trainer(job)
    for callback in callbacks:
        trainer.add_callback(callback)
    resume = last_checkpoint(out / CHECKPOINTS)
    if resume is not None:
        log(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    model = trainer.model
    if s.lora:  # the adapter alone, then the merged weights the studies load like any model
        model.save_pretrained(out / ADAPTER)
        model = model.merge_and_unload()
    model.save_pretrained(out)
    trainer.processing_class.save_pretrained(out)
    _write_record(out, job, "finished", trainer.state.log_history)
    if not job.run.keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    log(f"saved {out}")
    return out


def _trainer(job: Job):
    """trl's SFTTrainer or DPOTrainer, configured from the job; models load here."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from harness.backends.hf import from_pretrained

    s, run = job.settings, job.run
    model, tokenizer = from_pretrained(job.spec, AutoModelForCausalLM)
    common = dict(
        output_dir=str(Path(run.out) / CHECKPOINTS),
        num_train_epochs=s.epochs,
        max_steps=s.max_steps or -1,
        per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum,
        learning_rate=s.lr,
        lr_scheduler_type=s.scheduler,
        warmup_steps=s.warmup,
        weight_decay=s.weight_decay,
        seed=s.seed,
        data_seed=s.seed,
        bf16=job.bf16,
        use_cpu=job.spec.device == "cpu",
        gradient_checkpointing=s.gradient_checkpointing,
        max_length=s.max_length,
        save_strategy="steps",
        save_steps=run.save_steps,
        save_total_limit=2,
        logging_steps=run.logging_steps,
        report_to=[],
        disable_tqdm=not run.progress,
        dataset_num_proc=None,
    )
    dataset = Dataset.from_list([{c: row[c] for c in job.columns} for row in job.rows])
    peft_config = _lora_config(s) if s.lora else None
    if s.kind == "sft":
        from trl import SFTConfig, SFTTrainer

        return SFTTrainer(
            model=model,
            args=SFTConfig(**common),
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=peft_config,
        )
    from trl import DPOConfig, DPOTrainer

    # the reference is the model as it starts: a second copy, or (LoRA) the same weights with the adapter disabled
    ref_model = None if s.lora else from_pretrained(job.spec, AutoModelForCausalLM)[0]
    return DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=DPOConfig(**common, beta=s.beta),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def _lora_config(s: TuneSettings):
    from peft import LoraConfig

    return LoraConfig(
        r=s.lora_r,
        lora_alpha=s.lora_alpha,
        lora_dropout=s.lora_dropout,
        target_modules=list(s.lora_targets) or None,
        task_type="CAUSAL_LM",
    )


def _write_record(out: Path, job: Job, state: str, log_history: list[dict]) -> None:
    """tune.json: what the model depends on, the state of the run and trl's log (losses, rewards), replaced whole."""
    record = {
        "identity": job.identity,
        "state": state,
        "saved": "merged LoRA weights (adapter alone in adapter/)" if job.settings.lora else "full weights",
        "bf16": job.bf16,
        "device": job.spec.device,
        "examples": len(job.rows),
        "log_history": log_history,
    }
    tmp = out / f".{RECORD}.{os.getpid()}"
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / RECORD)


def losses(out: Path) -> list[float]:
    """The training losses a finished run logged, in order (from its tune.json)."""
    history = json.loads((Path(out) / RECORD).read_text(encoding="utf-8"))["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]
