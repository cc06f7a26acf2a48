# The two commands of the README: `make demo` and `make test`. Both create the environment when needed.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "neuraltrade needs Python 3.11 or newer; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $(STAMP)

## demo: set up, then run the nightly pipeline on the shipped sample data into ./data/neuraltrade.db
demo: $(STAMP)
	$(BIN)/neuraltrade init
	$(BIN)/neuraltrade nightly

## test: set up, then lint, type-check and run the whole suite
test: $(STAMP) lint unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy neuraltrade models tasks flows deployments neuraltrade_cli bench

unit: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist load

## bench: the benchmarks of docs/benchmarks.md, each beside its peers
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/vectors.py
	$(BIN)/python bench/memory_cache.py
	$(BIN)/python bench/backtest.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
