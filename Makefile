# The README's commands. `make setup` is idempotent: it reinstalls only when pyproject.toml changes.
export DVC_NO_ANALYTICS := 1
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
	$(PY) benchmarks/synthesis.py

# The pipeline so far: data import and prepare@task (training, evaluation and figures: to come).
repro: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
