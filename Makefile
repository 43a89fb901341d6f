# wsol: `make run` trains and evaluates the default job; `make test` runs the tests.
# Both create .venv and install the package with its dev extra when it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
STUDY ?= gap_vs_gmp
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-slow test-all lint format bench study studies samples clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install wsol with its dev extra (once)

run: $(STAMP) ## train and evaluate the default job (GoogLeNet-GAP on the synthetic data); ARGS="..." adds overrides
	$(PY) -m wsol.run $(ARGS)

test: $(STAMP) ## run the fast tests (the CI's command), one single-threaded worker per core
	$(PY) -m pytest -q -m "not slow" -n auto --dist loadfile $(ARGS)

test-slow: $(STAMP) ## run only the slow tests (full-size networks, real kills)
	$(PY) -m pytest -q -m slow $(ARGS)

test-all: $(STAMP) ## run every test
	$(PY) -m pytest -q $(ARGS)

lint: $(STAMP) ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## ruff format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP) ## benchmarks: evaluation, training, data, inference, memory; writes results/bench.md
	$(PY) -m wsol.bench $(ARGS)

study: $(STAMP) ## run a study's missing runs and write its tables: make study STUDY=gap_vs_gmp
	$(PY) -m wsol.study experiments/$(STUDY).yaml $(ARGS)

samples: $(STAMP) ## draw a grid of a data set with its boxes to results/<data>_samples.png (ARGS="data=...")
	$(PY) -m wsol.samples hydra.run.dir=. hydra.output_subdir=null hydra/job_logging=stdout $(ARGS)

clean: ## remove outputs/ and multirun/ (not .venv)
	rm -rf outputs multirun .pytest_cache
