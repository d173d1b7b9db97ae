"""Whether the Hugging Face hub can be reached, checked once per process.

Without a connection, every hub client call (transformers, huggingface_hub, datasets) retries for about 25 seconds
before it gives up. `offline()` checks the hub's host once (a TCP connection, a few seconds at most)
and, where it cannot be reached, puts huggingface_hub in its own offline mode (HF_HUB_OFFLINE), so hub ids resolve
from the local cache at once or fail at once. A user who sets HF_HUB_OFFLINE=1 gets the same without the check.
"""

from __future__ import annotations

import functools
import socket
import sys
from urllib.parse import urlparse

CONNECT_TIMEOUT = 3.0  # seconds


@functools.cache
def reachable() -> bool:
    """Whether a TCP connection to the hub's host (HF_ENDPOINT, default huggingface.co) opens."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def offline() -> bool:
    """True when hub ids can only come from the local cache: HF_HUB_OFFLINE is set, or the hub cannot be reached
    (in which case offline mode is switched on for this process)."""
    from huggingface_hub import constants

    if not constants.HF_HUB_OFFLINE and not reachable():
        constants.HF_HUB_OFFLINE = True
        if "datasets.config" in sys.modules:  # datasets copies the flag when it is first imported
            sys.modules["datasets.config"].HF_HUB_OFFLINE = True
    return bool(constants.HF_HUB_OFFLINE)
