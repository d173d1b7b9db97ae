"""What a cell's samples depend on beyond its config: the harness's identity version and the content of local files.

A cell's manifest records its identity; resuming it under another identity is refused, so old and new samples are
never mixed. Two things a config cannot show are covered here:

- IDENTITY_VERSION names what the harness itself does to produce a cell's samples and scores. Whoever changes
  that (how responses are decoded or scored, what an option means) bumps it and adds one line to CHANGES; an older
  cell then gets a one-line message saying so, instead of a puzzling refusal or, worse, silently mixed samples.
- `fingerprint` digests the content of local model directories and data files, so a model rebuilt in place at the
  same path is a different identity. Digests are cached per file, keyed by its path, size, mtime, ctime and inode,
  so a 14 GB checkpoint is read once per machine, not at every resume. A rebuild that keeps all five is not
  detected: an in-place rewrite always moves ctime, which no tool can set back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from harness.errors import UsageError

IDENTITY_VERSION = 3
CHANGES = {  # version -> what changed in what a cell's samples and scores depend on; bump with one line here
    1: "the first release",
    2: "responses decoded as they follow their prompt (SentencePiece models kept their leading space); content "
    "fingerprints of local models and data; gold models in float32 and named with their device",
    3: "the reported guide score reads a stopped response through its stop string, as the search does; the paper "
    "code's choices as options (guides' eos_at_budget, cbs branch_finished, models' system and "
    "prompt_special_tokens)",
}


def check_version(found: int, cell: Path) -> None:
    """Refuse to resume a cell made by another identity version, saying which and what to do."""
    if found == IDENTITY_VERSION:
        return
    if found > IDENTITY_VERSION:
        raise UsageError(
            f"cell {cell} was made by a newer harness (identity version {found}, this one writes "
            f"{IDENTITY_VERSION}); update the harness, or point `out` elsewhere"
        )
    raise UsageError(
        f"cell {cell} was made by identity version {found}; this harness writes version {IDENTITY_VERSION} "
        f"({CHANGES[IDENTITY_VERSION]}); point `out` elsewhere or delete that cell to start it afresh"
    )


def fingerprint(path: str) -> str | None:
    """A digest of the content of a local model directory (its top-level files, hidden ones aside: what
    from_pretrained reads) or data file; None where `path` is not local (a hub id, named by id and revision)."""
    local = Path(path).expanduser()
    if not local.exists():
        return None
    if local.is_file():
        return file_digest(local)
    files = sorted(p for p in local.iterdir() if p.is_file() and not p.name.startswith("."))
    return hashlib.sha256(json.dumps([[p.name, file_digest(p)] for p in files]).encode()).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content, from the digest cache when the file has not changed since it was hashed."""
    st = path.stat()
    key = json.dumps([str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino])
    cached = digest_cache() / hashlib.sha256(key.encode()).hexdigest()
    if cached.is_file():
        return cached.read_text(encoding="utf-8").strip()
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    try:  # one small file per entry, replaced atomically: safe on shared and network filesystems, no locks
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}")
        tmp.write_text(digest, encoding="utf-8")
        os.replace(tmp, cached)
    except OSError:  # an unwritable cache only costs hashing again next time
        pass
    return digest


def digest_cache() -> Path:
    """Where file digests are kept: $W2S_CACHE_DIR/digests, else $XDG_CACHE_HOME (or ~/.cache)/w2s-harness/digests."""
    root = os.environ.get("W2S_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "w2s-harness"
    return Path(root).expanduser() / "digests"
