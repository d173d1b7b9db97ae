"""The processes of one run started by `accelerate launch`: each cell's prompts are split among them by rank, and what
they decode is gathered to the main process, which alone writes the cell's files.

Started without `accelerate launch` (or with one process) a run is rank 0 of 1 and nothing here talks to anything.
Each prompt's seed derives from the cell's seed and the prompt's id alone and the engine's results do not depend on
which prompts share a batch, so N processes write the very samples one process would, in the same order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from typing import TypeVar

T = TypeVar("T")


def launched() -> bool:
    """Whether this process is one of several started together (torchrun's environment, which accelerate sets)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@cache
def _state():
    from accelerate import PartialState

    return PartialState()


class Ranks:
    """This process's place among the run's processes, and the few collective steps the runner needs."""

    def __init__(self):
        self.count, self.index = (_state().num_processes, _state().process_index) if launched() else (1, 0)

    @property
    def main(self) -> bool:
        return self.index == 0

    def split(self, items: Sequence[T]) -> list[T]:
        """This process's contiguous share of `items` (accelerate's split; earlier ranks take one more)."""
        if self.count == 1:
            return list(items)
        with _state().split_between_processes(list(items)) as mine:
            return list(mine)

    def gather(self, items: list[T]) -> list[T]:
        """Every process's items, concatenated in rank order, on every process."""
        if self.count == 1:
            return items
        from accelerate.utils import gather_object

        return gather_object(items)

    def wait(self) -> None:
        """Wait until every process gets here."""
        if self.count > 1:
            _state().wait_for_everyone()


def gpu_share(gpus: int, local_index: int, local_count: int) -> list[int]:
    """The GPUs of one of `local_count` processes on a machine with `gpus`: an equal, contiguous share each."""
    from harness.errors import require

    per = gpus // local_count
    require(
        per >= 1,
        f"{local_count} processes on a machine with {gpus} GPU(s) cannot each spread a model with device_map; "
        f"launch at most {gpus} processes per machine",
    )
    return list(range(local_index * per, (local_index + 1) * per))


def rank_max_memory(device_map: str | None) -> dict | None:
    """Where a model spread by a device_map strategy ("auto", ...) may go in this process: under `accelerate launch`,
    only this process's share of the machine's GPUs (their free memory), so processes do not share GPUs. None: any."""
    import torch

    if device_map is None or not launched() or not torch.cuda.is_available():
        return None
    share = gpu_share(torch.cuda.device_count(), _state().local_process_index, int(os.environ["LOCAL_WORLD_SIZE"]))
    return {i: torch.cuda.mem_get_info(i)[0] for i in share}


def rank_device(device: str) -> str:
    """A model's device in this process: plain "cuda" means this process's own GPU when several processes run."""
    if device == "cuda" and launched():
        return f"cuda:{_state().local_process_index}"
    return device
