"""Several processes (`accelerate launch`, gloo on CPU) run one study: each cell's prompts split by rank, one run on
disk with every sample exactly once, the same samples as one process writes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from conftest import study_dict, w2s

from harness.errors import UsageError
from harness.ranks import gpu_share
from harness.store import read_samples

CELLS = ("imdb/strong/plain/seed-0", "imdb/strong/cbs-W2-K2-L2/seed-0", "imdb/strong/bon-N3/seed-1")


def comparable(sample: dict) -> dict:
    """A sample without its wall time, the one thing that differs between runs."""
    return sample | {"compute": {k: v for k, v in sample["compute"].items() if k != "seconds"}}


@pytest.fixture
def config(zoo, gold_paths, data_dir):
    config = study_dict(zoo, gold_paths, data_dir) | {"limit": 7, "batch_size": 2}
    del config["tasks"]["tldr"]
    config["tasks"]["imdb"].pop("tuned")
    config["methods"] = ["plain", {"cbs": {"width": 2, "successors": 2, "chunk_length": 2}}, {"bon": {"n": 3}}]
    path = data_dir / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def launch(processes: int, *args: str, cwd) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes), "--cpu"]
    argv += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "harness.cli", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_two_processes_write_the_samples_one_process_writes(config, capsys):
    code, _, err = w2s(capsys, "run", str(config), "--no-progress", f"out={config.parent / 'one'}")
    assert code == 0, err
    done = launch(2, "run", str(config), "--no-progress", f"out={config.parent / 'two'}", cwd=config.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("cells complete") == 1  # the main process speaks for the run
    for cell in CELLS:
        one, two = read_samples(config.parent / "one" / cell), read_samples(config.parent / "two" / cell)
        assert len(two) == 7 and len({s["id"] for s in two}) == 7  # every sample exactly once
        assert [comparable(s) for s in two] == [comparable(s) for s in one]
        assert (config.parent / "two" / cell / "summary.json").exists()
    assert not list((config.parent / "two").rglob("*.tmp-*"))


def test_each_process_spreads_its_model_over_its_own_gpus():
    """Under `accelerate launch` with device_map: auto, each process's model goes on its share of the GPUs."""
    assert [gpu_share(8, i, 4) for i in range(4)] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert gpu_share(8, 0, 1) == list(range(8)) and gpu_share(3, 1, 2) == [1]
    with pytest.raises(UsageError, match="4 processes on a machine with 2 GPU"):
        gpu_share(2, 0, 4)
