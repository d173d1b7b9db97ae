"""Bad user input and what the CLI says about it: UsageError (raise it, or `require`) for mistakes the code finds,
and `user_facing` for the few library and system errors that a user's choices cause (a full disk, a path without
permission, a model too large for the device). Everything else is a bug and keeps its traceback."""

from __future__ import annotations

import errno
import sys


class UsageError(ValueError):
    """Bad arguments or configuration; the message names the problem and how to fix it, on one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))


def require(condition: bool, message: str) -> None:
    """Raise UsageError(message) unless condition holds."""
    if not condition:
        raise UsageError(message)


# system errors that say something about the user's paths or machine, never about the code, with their fix
_OS_FIXES = {
    errno.ENOSPC: "free some space there or point the output elsewhere",
    errno.EDQUOT: "free some space there or point the output elsewhere",
    errno.EROFS: "choose a path on a writable file system",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
}


def user_facing(err: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for anything else (a bug: let it propagate).

    Finished samples are on disk before any of these can strike, so the fix is always "mend it and run again"."""
    if isinstance(err, UsageError):
        return str(err)
    if isinstance(err, OSError) and err.errno in _OS_FIXES:
        where = f" ({err.filename})" if err.filename else ""
        return f"{err.strerror or err}{where}; {_OS_FIXES[err.errno]}, then run again (finished work is kept)"
    torch = sys.modules.get("torch")  # only a process that imported torch can run out of device memory
    if torch is not None and isinstance(err, torch.OutOfMemoryError):
        first = str(err).strip().splitlines()[0] if str(err).strip() else "out of memory"
        return (
            f"out of device memory ({first[:160]}); lower batch_size, use dtype bfloat16, or spread the model over "
            "several GPUs with device_map: auto, then run again (finished work is kept)"
        )
    return None
