# p2pledger: every target sets itself up from a clean clone with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: all venv test lint format demo bench sim chaos clean

all: test

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not slow' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check p2pledger netsim tests
	$(BIN)/ruff format --check p2pledger netsim tests
	$(BIN)/mypy p2pledger netsim

format: $(STAMP)
	$(BIN)/ruff format p2pledger netsim tests
	$(BIN)/ruff check --fix p2pledger netsim tests

demo: $(STAMP)
	$(BIN)/python -m p2pledger.demo

bench: $(STAMP)
	$(BIN)/python -m tests.bench

sim: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests/raft $(PYTEST_ARGS)

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
