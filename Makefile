# hfsync developer commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test lint format demo bench bench-quick clean

install: $(VENV)/.installed

# editable_mode=compat: a plain path entry in a .pth file instead of setuptools' import-hook
# finder, which imports pathlib, urllib.parse and more into every start (~9% of the
# instructions of `hfsync --version`): the dev venv then starts like a user's wheel install.
$(VENV)/.installed: setup.cfg pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat
	touch $@

test: install
	$(PY) -m pytest -q

LINT_PATHS := hfsync tests scripts scripts/bench scripts/demo

lint: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format $(LINT_PATHS)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)

demo: install
	$(PY) scripts/demo

bench: install
	$(PY) scripts/bench

bench-quick: install
	$(PY) scripts/bench --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
