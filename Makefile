# Set-up, tests and benchmarks. `make setup` then `make test` is all a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to one release: on a machine that provides its CPU build locally pip takes that file,
# elsewhere PyPI's build (CUDA on Linux). Pick another CUDA build with e.g.
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=

# `make reproduce-fig3`: the paper's Figure 3 from one recipe (configs/fig3-$(PRESET).yaml): mini (offline, on a CPU)
# or paper (the paper's models by hub id, for a GPU machine). ARGS=--dry-run prints every step and cell.
PRESET ?= mini
ARGS ?=

.PHONY: setup test test-slow bench lint clean reproduce-fig3 mini-zoo ci-baseline

setup:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python >= 3.11 is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	@$(BIN)/python -c 'import torch, transformers; print(f"ready: torch {torch.__version__}, transformers {transformers.__version__}, cuda={torch.cuda.is_available()}")'

test:
	$(BIN)/python -m pytest -q -m "not slow"

test-slow:
	$(BIN)/python -m pytest -q -m slow

reproduce-fig3:
	$(BIN)/w2s reproduce configs/fig3-$(PRESET).yaml $(ARGS)

mini-zoo:
	$(BIN)/w2s reproduce configs/fig3-mini.yaml --zoo-only

# The CI miniature's baseline, which `make test` checks (tests/test_fig3_ci.py): rewrite it from a fresh run, on one
# thread as the test runs it, where a change of its scores is intended (a change of configs/fig3-ci.yaml, of a
# training step, or of what a cell depends on). Each score keeps its stored rule; a new one gets --ci-factor 3
# (README, "Scores guarded in CI"). Review the diff, then commit it.
ci-baseline:
	rm -rf runs/fig3-ci
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/w2s reproduce configs/fig3-ci.yaml --zoo runs/fig3-ci/zoo --out runs/fig3-ci/study
	$(BIN)/w2s regress runs/fig3-ci/study --baseline tests/baselines/fig3-ci.json --update --ci-factor 3

bench:
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/api.py

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
