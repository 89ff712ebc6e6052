# The two commands: `make report` (build everything on the demo data) and `make test`.
# Everything runs inside .venv, created from the exact pins in requirements.lock.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: report report-local test lint selfcheck benchmark repro-check pool-demo lab venv clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

## Build every report on the bundled demo clinic (dvc repro: validate -> join -> model -> report).
report: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

## Own data with a git-ignored params.local.yaml (README: "Using your own data, privately"): the four stages.
report-local: $(STAMP)
	$(BIN)/outcomes validate && $(BIN)/outcomes join && $(BIN)/outcomes model && $(BIN)/outcomes report

## Lint, format and types (rules in pyproject.toml). `make test` runs it first, so CI fails on a new finding.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

## Run the lint and the test suite (warnings are errors; notebooks executed; docstring examples in src/analysis run too).
test: $(STAMP) lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

## Slow statistical validation: simulation study of the primary estimator.
selfcheck: $(STAMP)
	$(BIN)/outcomes selfcheck

## Timings (not tests; benchmarks/README.md): validate at 200k clients; the whole pipeline at 50k clients stage by
## stage; the primary fit at 1k-100k clients beside lme4 (when R is present); the therapist page at 50k clients
## (size, first screen in Chromium); `outcomes selfcheck`; the network fit for 6 and 50 clinics. Medians, peak memory.
benchmark: $(STAMP)
	$(BIN)/python benchmarks/bench_validate.py
	$(BIN)/python benchmarks/bench_stages.py
	$(BIN)/python benchmarks/bench_fit.py
	$(BIN)/python benchmarks/bench_page.py
	$(BIN)/python benchmarks/bench_selfcheck.py
	$(BIN)/python benchmarks/bench_network.py

## Same bytes on any machine: the demo built twice from scratch in temporary copies (the second with another BLAS
## kernel, one font family, another time zone), every file of reports/ and data/processed/ compared, and dvc.lock.
repro-check: $(STAMP)
	$(BIN)/python benchmarks/repro_check.py

## A demo network: 6 simulated clinics, each through the pipeline in reports/network/<clinic>/, pooled.
pool-demo: $(STAMP)
	$(BIN)/python -m analysis.pool.demo --out reports/network

## JupyterLab on the notebooks; as root (a container) jupyter refuses to start without --allow-root, so it is
## added then and only then.
lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/ $$(test "$$(id -u)" -eq 0 && echo --allow-root)

clean:
	rm -rf $(VENV)
