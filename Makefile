# distill: every target sets up .venv on first use (torch==2.13.0 first, then the project).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DISTILL := $(VENV)/bin/distill
# Nothing here may wait on a model hub: models come from local paths or the bundled package.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

SCIFACT ?= ../shared/data/scifact
DEMO_DATA := $(if $(wildcard $(SCIFACT)/queries.jsonl),$(SCIFACT),beir:scifact)

.PHONY: help install test test-slow lint format demo clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install torch==2.13.0, then the project

lint: install  ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint  ## set up, then ruff and the test suite (CI runs this)
	$(PY) -m pytest -q

test-slow: install  ## the long real-model tests, not run in CI
	$(PY) -m pytest -q -m slow

demo: install  ## set up, then the whole pipeline on a small real SciFact sample (about 25 min on 1 CPU thread)
	@test -f runs/quickstart-data/manifest.json || $(DISTILL) data sample $(DEMO_DATA) --output runs/quickstart-data \
		--train-queries 200 --test-queries 100 --docs 1200 --neighbours 5
	@$(DISTILL) pipeline configs/quickstart.yaml

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache
