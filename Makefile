# natdeck: `make demo` runs the app on its simulated gateway; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint typecheck bench fuzz screenshots clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/natdeck --demo

# Everything, lab included: the lab (miniupnpd in network namespaces) needs root and
# installs its Debian packages itself; elsewhere its tests skip, saying why.
test: setup
	$(PY) -m pytest -q
	$(PY) -m mypy
	$(PY) -m ruff check engine tui tests

# Without the lab.
test-fast: setup
	$(PY) -m pytest -q -m "not lab"

lint: setup
	$(PY) -m ruff check engine tui tests
	$(PY) -m mypy

# Every benchmark, natdeck and its peers in the same rounds, issue 15's goals beside them
# (minutes: miniupnpd at both speeds). BENCH_ARGS=--quick for a smoke run, --with-10k for
# 10,000 managed mappings; the Markdown is also kept in BENCH_OUT.
BENCH_ARGS ?=
BENCH_OUT ?= tests/bench/latest.md
bench: setup
	$(PY) -m tests.bench.run_all $(BENCH_ARGS) > $(BENCH_OUT).part
	mv $(BENCH_OUT).part $(BENCH_OUT)
	cat $(BENCH_OUT)

fuzz: setup
	$(PY) tests/bench/fuzz_wire.py --count 1000000

screenshots: setup
	$(PY) -m tui.screenshots

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
