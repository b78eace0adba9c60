# augbench — `make help` lists the targets. Every target installs what it needs first.
SHELL := /bin/bash
PYTHON ?= python3
UV ?= $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
RUN := $(UV) run --locked --no-sync
ARGS ?=
GRID ?= multirun/grid
HOST ?= localhost
GPU ?= h100,a100,h200

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast test-slurm test-gpu gpu-check gallery report evaluate example grid bench projection kernels-check tensorboard clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install: .venv/.synced ## bootstrap uv if missing, then install the locked environment into .venv

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || { echo "uv not found: installing it with pip"; \
	  $(PYTHON) -m pip install --user --quiet uv || $(PYTHON) -m pip install --quiet uv \
	  || $(PYTHON) -m pip install --user --break-system-packages --quiet uv; }
	$(UV) sync --locked
	@touch $@

train: install ## train the default run (make train ARGS="model=lenet aug=cutmix")
	$(RUN) python train.py $(ARGS)

test: install ## run the test suite (about 14 min on 2 CPU cores; see test-fast)
	$(RUN) python -m pytest $(ARGS)

test-fast: install ## the test suite without the slow real-data runs
	$(RUN) python -m pytest -m "not slow" $(ARGS)

test-slurm: install ## start a real one-node SLURM (root; Debian packages), run the cluster tests on it, tear it down
	AUGBENCH_SLURM_TESTS=1 $(RUN) python -m pytest tests/slurm $(ARGS)

test-gpu: install ## only the tests that need a CUDA GPU (skipped where none is visible)
	$(RUN) python -m pytest -m gpu $(ARGS)

gpu-check: install ## on a new GPU machine, first: device, GPU tests, every backbone, exact resume, compile, bench
	$(RUN) python -m augbench.gpucheck $(ARGS)

gallery: install ## write gallery.png: training images under every regime of conf/aug
	$(RUN) python -m augbench.gallery $(ARGS)

grid: install ## the whole study: 2 datasets x 4 models x 5 regimes x 5 seeds (resumable)
	$(RUN) python train.py --multirun experiment=grid $(ARGS)

report: install ## Table 1, curves and report.md for a finished or partial grid (GRID=multirun/grid)
	$(RUN) python -m augbench.report $(GRID) $(ARGS)

example: install ## the Fashion-MNIST study and its label-noise check on this machine (resumable), report into docs/example/
	$(RUN) python train.py --multirun experiment=fashion_study $(ARGS)
	$(RUN) python train.py --multirun experiment=fashion_label_noise $(ARGS)
	$(RUN) python -m augbench.example multirun/fashion_example docs/example

evaluate: install ## the evaluation suite on a finished run or grid, resumably (GRID=multirun/grid ARGS=eval=full)
	$(RUN) python -m augbench.evaluate $(GRID) $(ARGS)

bench: install ## throughput of augbench vs the conventional pipeline; writes benchmarks/
	$(RUN) python -m augbench.bench $(ARGS)

projection: install ## PROJECTED GPU cost of the grid from kernels counted on the CPU (GPU=h100,a100,h200); writes benchmarks/projection_*
	$(RUN) python -m augbench.bench --project $(GPU) $(ARGS)

kernels-check: install ## kernels per training step against benchmarks/kernels.json (fails when a cell grew)
	$(RUN) python -m augbench.bench --check-kernels $(ARGS)

tensorboard: install ## serve the TensorBoard logs of outputs/ and multirun/ on localhost:6006 (HOST=0.0.0.0 exposes them)
	$(RUN) tensorboard --logdir . --port 6006 --host $(HOST)

clean: ## remove the virtual environment and caches (never run outputs)
	rm -rf .venv .pytest_cache
