# The two commands a fresh clone needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint unit clean-stack

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Set up, then run the default capacity run (scenarios/smoke.toml) on the embedded stack.
run: $(STAMP)
	$(BIN)/capacity run

## Set up (venv, Docker engine for the collector tests, Chromium for the report test, tcpdump
## for the latency truth test), lint, test.
test: $(STAMP)
	bash .ci/test-setup.sh
	$(BIN)/ruff check capacity tests benchmarks
	$(BIN)/ruff format --check capacity tests benchmarks
	$(BIN)/mypy
	. .ci/test-env.sh && $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check capacity tests benchmarks
	$(BIN)/mypy

## Fast tests only: no Docker, no embedded stack, no Apollo federation, nothing slow (the
## latency truth test skips without tcpdump). `make test` runs everything.
unit: $(STAMP)
	$(BIN)/pytest -m "not docker and not slow and not stack and not apollo"

clean-stack: $(STAMP)
	$(BIN)/capacity stack down
