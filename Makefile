# Two entry points: `make demo` and `make test`. Both create .venv and install the CPU stack first.
# `make status CONFIG=config/config.yaml`: done / running / failed / pending cells of a running grid.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(abspath $(VENV))/bin
# Rules call `python -m workflow_scripts...`: put the venv's python first on PATH.
export PATH := $(BIN):$(PATH)

.PHONY: demo test lint benchmark status clean-demo

CONFIG ?= config/config.yaml

$(VENV)/installed.stamp: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

demo: $(VENV)/installed.stamp
	@start=$$(date +%s); \
	$(BIN)/snakemake --cores 2 --configfile config/demo.yaml && \
	echo "Demo finished in $$(( $$(date +%s) - start )) s. Figures: $(CURDIR)/results/demo/figures/ ; table: $(CURDIR)/results/demo/tables/cells.csv"

test: $(VENV)/installed.stamp
	$(BIN)/python -m pytest tests

lint: $(VENV)/installed.stamp
	$(BIN)/snakemake --lint
	$(BIN)/snakemake --configfile config/demo.yaml --lint

benchmark: $(VENV)/installed.stamp
	$(BIN)/python benchmarks/eval_cell_overhead.py
	$(BIN)/python benchmarks/dag_overhead.py
	$(BIN)/python benchmarks/aggregate_grid.py

status:
	$(BIN)/python -m workflow_scripts.grid_status --configfile $(CONFIG)

clean-demo:
	rm -rf results/demo resources/demo
