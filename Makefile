# The README's commands. `make setup` is idempotent: it reinstalls only when pyproject.toml changes.
export DVC_NO_ANALYTICS := 1
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup test test-fast lint bench repro profile evidence evidence-gpu uhr gpu gpu-wheels figures \
	docs-figures docs-evidence-figures docs-uhr-figures lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name glsgn --display-name "glsgn (.venv)" >/dev/null
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

# The fast tier, for iteration (about a minute on 2 cores): every test not marked slow (the
# whole-pipeline ones: a fresh clone's dvc repro, torchrun, notebook runs). CI runs `make test`.
# One thread per process: the tests' tensors are tiny, and on a busy 2-core machine two OpenMP
# threads spin-waiting on each other made them 10 to 20 times slower.
test-fast: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check glsgn tests benchmarks scripts
	$(VENV)/bin/ruff format --check glsgn tests benchmarks scripts

bench: setup
	$(PY) benchmarks/uhr_inference.py
	$(PY) benchmarks/synthesis.py

# The whole pipeline: data, training, evaluation, notebooks and figures.
repro: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro

# Profiles (README "Profiles"): DIR/profile.yaml holds DIR's differences from params.yaml;
# `glsgn profile DIR` writes DIR/params.yaml and DIR/dvc.yaml, then DVC runs DIR's pipeline.
profile: setup
	@test -n "$(P)" || { echo "usage: make profile P=DIR (a folder with a profile.yaml)"; exit 2; }
	$(VENV)/bin/glsgn profile $(P)
	cd $(P) && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(CURDIR)/$(VENV)/bin/dvc repro

# The CPU evidence: reflection (8 variants) and haze (4), 3 seeds, 40 test images each,
# learning curves and the ablation table (about 55 minutes on 2 cores).
evidence:
	$(MAKE) profile P=evidence

# The GPU evidence: every variant on reflection at 1K, 3 seeds, for one H100/H200 (never run).
evidence-gpu:
	$(MAKE) profile P=evidence/gpu

# UHR on this CPU: real photographs (fetched by uhr/stages.yaml's photos stage), 1024x576
# images, crops of a quarter side; full against fullres_flops and local_only, 2 seeds (~100 min).
uhr:
	$(MAKE) profile P=uhr

# Your own paired dataset (data/raw/mine) at paper scale on GPUs: one run, mine-full.
gpu:
	$(MAKE) profile P=gpu

# Wheels for scripts/gpu_check.sh on a GPU machine whose image lacks pydantic: carry .whl there
# (pydantic-core is built per Python version; these cover 3.10 to 3.13).
gpu-wheels: setup
	for v in 3.10 3.11 3.12 3.13; do $(PY) -m pip download -q --only-binary=:all: -d .whl \
	  --python-version $$v --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
	  pydantic || exit 1; done

# Re-run only the notebook stages (their figures go to reports/figures/).
figures: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/dvc repro --single-item notebook

# The README's figures: copies of the main ones in docs/figures/, refreshed from a complete run.
DOC_FIGURES := dataset/dataset ablation/reflection_psnr attention/attention attention/pyramid \
	qualitative/reflection efficiency/efficiency training/reflection
docs-figures: repro
	for f in $(DOC_FIGURES); do \
	  $(PY) scripts/docs_copy.py reports/figures/$$f.png docs/figures/$$(echo $$f | tr / -).jpg \
	    || exit 1; done

# The evidence profile's forest plots and learning curves in the README: copies made after `make evidence`.
EVIDENCE_FIGURES := ablation/reflection_psnr_forest ablation/haze_psnr_forest training/reflection-learning-curve training/haze-learning-curve
docs-evidence-figures:
	for f in $(EVIDENCE_FIGURES); do \
	  $(PY) scripts/docs_copy.py evidence/reports/figures/$$f.png \
	    docs/figures/evidence-$$(echo $$f | tr / -).jpg || exit 1; done

# The UHR profile's figures in the README: copies made after `make uhr`, wide enough to keep
# their 1:1 crops at one image pixel per figure pixel.
UHR_FIGURES := dataset/haze-zoom training/haze-learning-curve qualitative/haze
docs-uhr-figures:
	for f in $(UHR_FIGURES); do \
	  $(PY) scripts/docs_copy.py uhr/reports/figures/$$f.png \
	    docs/figures/uhr-$$(echo $$f | tr / -).jpg --max-width 2400 || exit 1; done

# JupyterLab on the notebooks, with the project's kernel ("glsgn (.venv)"). As root (a container)
# it adds --allow-root; with no display (and not macOS) --no-browser: open the URL it prints.
# More flags: make lab LAB_ARGS='--ip=0.0.0.0 --port=8889'. lab-check starts this same command.
LAB_CMD = $(VENV)/bin/jupyter lab notebooks/ $$(test "$$(id -u)" = 0 && echo --allow-root) \
	$$(test -n "$$DISPLAY$$WAYLAND_DISPLAY" || test "$$(uname)" = Darwin || echo --no-browser) $(LAB_ARGS)
lab: setup
	$(LAB_CMD)

.PHONY: lab-check
lab-check: setup
	$(PY) scripts/lab_check.py -- $(LAB_CMD)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
