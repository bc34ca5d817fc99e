# Calendar Sync. `make run` (embedded defaults) and `make test` (PostgreSQL + Redis).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test test-fast lint bench install install-dev clean receivers sync graph_batch scale workers

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamps make reinstall happen only when a requirements file changed.
$(VENV)/.installed: requirements.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(PY) -m calendar_sync.dev.run

test: install-dev
	$(PY) -m pytest $(PYTEST_ARGS)

# The quick subset: no test that starts real processes (`slow`) or drives Chromium (`browser`).
test-fast: install-dev
	$(PY) -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check .
	$(PY) manage.py makemigrations --check --dry-run

# `make bench` runs every benchmark; `make bench scale` (or any benchmark names after `bench`)
# runs only those.
BENCH_NAMES := $(filter-out bench,$(MAKECMDGOALS))

bench: install-dev
	$(PY) -m bench $(BENCH_NAMES)

receivers sync graph_batch scale workers:
	@:

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
