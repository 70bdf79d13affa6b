# The README's commands. `make setup` is idempotent: it reinstalls only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test lint bench repro clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check glsgn tests benchmarks

bench: setup
	$(PY) benchmarks/uhr_inference.py

repro: setup
	@echo "make repro: the DVC pipeline (data, training, evaluation, figures) is not built yet;" >&2
	@echo "see README.md, 'Status'. Until then: make test, and glsgn restore." >&2
	@exit 2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
