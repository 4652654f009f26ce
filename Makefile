# Reseller Partner Portal — developer commands. `make demo` and `make test` are the two that matter.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# Find a Python >= 3.12 without asking: explicit PYTHON, then PATH, then pyenv's versions.
PYTHON ?= $(shell for c in python3.13 python3.12 python3.14 python3; do \
	  p=$$(command -v $$c 2>/dev/null) && $$p -c 'import sys; sys.exit(sys.version_info < (3,12))' 2>/dev/null && { echo $$p; exit 0; }; \
	done; \
	for p in $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  $$p -c 'import sys; sys.exit(sys.version_info < (3,12))' 2>/dev/null && { echo $$p; exit 0; }; \
	done)
DATABASE_URL ?=
export DATABASE_URL

.PHONY: install browser-deps demo test test-sqlite test-postgres fuzz lint fmt bench bench-seed clean browsers screenshots

$(BIN)/portal: pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python >= 3.12 found; set PYTHON=/path/to/python3.12" >&2; exit 1; }
	@echo "Using $(PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(BIN)/portal

# Browser libraries (Chart.js) from package-lock.json; re-run only when the lockfile changes.
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --omit=dev --no-audit --no-fund
	@touch $@

install: $(BIN)/portal node_modules/.package-lock.json

demo: install
	$(BIN)/portal demo

# Debian's Chromium drives the browser tests; installed here when missing and we are root.
browser-deps:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; } || \
	  echo "warning: /usr/bin/chromium missing; browser tests will be skipped" >&2

# Runs the whole suite on the database named by DATABASE_URL (SQLite under var/ when unset).
test: install browser-deps
	$(BIN)/ruff check src tests bench tools
	$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

test-sqlite: install
	DATABASE_URL= $(MAKE) test

test-postgres: install
	DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal $(MAKE) test

# A longer API fuzzing campaign than the one in `make test` (FUZZ_EXAMPLES per operation).
FUZZ_EXAMPLES ?= 1000
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider tests/fuzz -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

fmt: install
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

# Benchmarks on a scratch PostgreSQL database (dropped and re-created): BENCH_DATABASE_URL, SUITES.
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal_bench
export BENCH_DATABASE_URL
bench: install
	$(BIN)/python -m bench.run $(SUITES)

# The bench's platform (50 partners, a million-line reseller) in BENCH_DATABASE_URL, with
# a login and API keys printed, for a load test of your own against `portal serve`.
bench-seed: install
	$(BIN)/python -m bench.seed

# Screenshots of the main pages (desktop and phone) into docs/screenshots/, from a fresh demo.
screenshots: install browser-deps
	$(BIN)/python tools/screenshots.py

clean:
	rm -rf $(VENV) var build src/*.egg-info
