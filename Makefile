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
RUN ?= runs/demo

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

demo: install  ## set up, then run the stages that exist on a small real sample
	$(DISTILL) data stats $(DEMO_DATA) --model bundled --max-length 256
	$(DISTILL) data split $(DEMO_DATA) --split train --output $(RUN)/split
	$(DISTILL) evaluate $(DEMO_DATA) --split test --output $(RUN)/evaluate --cost-queries 20

clean:  ## remove run outputs and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache
