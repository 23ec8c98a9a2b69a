# p2pledger: every target sets itself up from a clean clone with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: all venv test lint format demo bench bench-long sim chaos clean

all: test

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot,bench]'
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
	@echo
	@echo "== netsim: the same daemons behind netsim's relays, the leader partitioned away and healed =="
	$(BIN)/netsim run demo

bench: $(STAMP)
	$(BIN)/python -m tests.bench

# The cluster under rising load, then a minute at twice the best sustainable rate
# (the term must not change; RSS and 503s are reported), with a profile of the leader.
bench-long: $(STAMP)
	$(BIN)/python -m tests.bench --only cluster --profile --perf --overload-seconds 60

sim: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests/raft $(PYTEST_ARGS)

# Every shipped netsim scenario at full length, then the 10-minute random soak; each
# run's report is kept in chaos-results/<scenario>/. Fails if any verdict is FAIL.
CHAOS_SCENARIOS ?= smoke leader-loss partition-halves isolate-leader flaky-wan rolling-restart wipe-and-catch-up grow-and-shrink membership-under-partition rotate-and-revoke random-soak scale-25

chaos: $(STAMP)
	@rm -rf chaos-results; mkdir -p chaos-results; failed=""; \
	for s in $(CHAOS_SCENARIOS); do \
		echo "== netsim run $$s"; \
		$(BIN)/netsim run $$s --no-progress --workdir chaos-results/$$s > chaos-results/$$s.txt 2>&1 \
			|| failed="$$failed $$s"; \
		grep -m1 -E "^(PASS|FAIL)" chaos-results/$$s.txt || tail -3 chaos-results/$$s.txt; \
	done; \
	if [ -n "$$failed" ]; then echo "chaos: FAIL:$$failed (see chaos-results/)"; exit 1; fi; \
	echo "chaos: every scenario passed (reports in chaos-results/)"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
