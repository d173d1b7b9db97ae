"""Checks made before any model weights load, so that a mistake costs seconds rather than a half-finished run:
output paths can be written, devices exist, model directories hold a config, weights and a tokenizer, and every
prompt fits each model's context. They read configs and tokenizers only, and write nothing (`w2s run --dry-run`
runs them too)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import UsageError, require
from harness.types import ModelSpec, Template

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")  # what from_pretrained accepts by name


def check_output_dir(path: Path | str, what: str, fix: str) -> None:
    """`path` is a writable directory or can be created as one; nothing is created. `fix` says how to give another."""
    path = Path(path).expanduser()
    where = next(p for p in (path, *path.parents) if p.exists())  # the root always exists
    if where == path:
        require(path.is_dir(), f"{what} {str(path)!r} is a file, not a directory; {fix}")
    else:
        require(where.is_dir(), f"{what} {str(path)!r} cannot be created: {str(where)!r} is a file; {fix}")
    require(os.access(where, os.W_OK | os.X_OK), f"{what} {str(path)!r} is not writable ({where}); {fix}")


MOUNTS = Path("/proc/mounts")  # the kernel's mount table (Linux); elsewhere no filesystem is known to be remote
NETWORK_FILESYSTEMS = frozenset(
    "nfs nfs4 cifs smb3 smbfs ncpfs afs 9p ceph lustre gpfs beegfs glusterfs davfs "
    "fuse.sshfs fuse.glusterfs fuse.ceph fuse.cephfs fuse.s3fs fuse.gcsfuse fuse.rclone fuse.juicefs".split()
)


def filesystem_type(path: Path | str, mounts: Path | None = None) -> str | None:
    """The type of the filesystem holding `path`, or that it would be created on: the deepest mount point above it in
    the mount table. None where there is no table to read."""
    try:
        table = (mounts or MOUNTS).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    where = Path(path).expanduser().resolve()  # symlinks followed as far as the path exists
    best, kind = -1, None
    for line in table:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\"))
        if (point == where or point in where.parents) and len(point.parts) >= best:  # deepest; later shadows
            best, kind = len(point.parts), fields[2]
    return kind


def check_local_output(out: Path, shard: str, mounts: Path | None = None) -> None:
    """Shards share `out`: its SQLite score cache (WAL mode) and the cells' `flock` locks are safe between processes
    of one machine only, and not at all on a network filesystem, so sharding onto one is refused."""
    kind = filesystem_type(out, mounts)
    require(
        kind not in NETWORK_FILESYSTEMS,
        f"--shard {shard} with out {str(out)!r} on a network filesystem ({kind}) is refused: its score cache and cell "
        "locks are not safe there; give each machine an `out` on its local disk and copy the cell directories into "
        "one directory when they are done (w2s report reads them there)",
    )


def make_output_dir(path: Path | str, what: str, fix: str) -> Path:
    """Create (or keep) an output directory the user named, after `check_output_dir`; a failure is one line."""
    check_output_dir(path, what, fix)
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # what a permission check cannot foresee (e.g. under /proc)
        raise UsageError(f"cannot create {what} {str(path)!r} ({err.strerror or err}); {fix}") from None
    return path


def check_device(device: str | None) -> None:
    """Refuse a device this machine does not have (None is the default: cuda where there is one, else cpu)."""
    if device is None:
        return
    import torch

    have = ["cpu"]
    for kind in ("cuda", "xpu", "mps"):
        backend = getattr(torch, kind, None)
        if backend is not None and backend.is_available():
            count = backend.device_count() if hasattr(backend, "device_count") else 1
            have += [kind] + [f"{kind}:{i}" for i in range(count)]
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"unknown device {device!r}; this machine has: {', '.join(have)}") from None
    if parsed.type == "cpu" or str(parsed) in have:
        return
    built = "" if torch.version.cuda else f" (torch {torch.__version__} is built without CUDA)"
    raise UsageError(f"device {device!r} does not exist on this machine{built}; use one it has: {', '.join(have)}")


def check_placement(spec: ModelSpec) -> None:
    """The device a model is to load on exists (or its device_map names a strategy accelerate knows, or a device)."""
    if spec.device_map is None:
        check_device(spec.device)
    elif spec.device_map not in DEVICE_MAP_STRATEGIES:
        check_device(spec.device_map)


@dataclass(frozen=True)
class ModelFiles:
    """What a model offers before its weights load: its tokenizer and its config."""

    name: str
    tokenizer: PreTrainedTokenizerBase
    config: PretrainedConfig


def inspect_model(spec: ModelSpec) -> ModelFiles:
    """Check a model's device and its files (config, weights, tokenizer) and read its tokenizer and config."""
    from harness.backends.hf import load_config, load_tokenizer

    check_placement(spec)
    config = load_config(spec)
    return ModelFiles(spec.path, load_tokenizer(spec), config)


def check_prompts(model: ModelFiles, template: Template, prompts: Iterable[str], new_tokens: int) -> None:
    """Every prompt renders to tokens and leaves room for `new_tokens` in the model's context, as decoding requires."""
    from harness.backends.hf import context_length, encode_prompt

    context = context_length(model.config)
    for prompt in prompts:
        encode_prompt(model.tokenizer, context, model.name, template, prompt, new_tokens)
