# The README's commands. Every target bootstraps .venv/ from the pinned lock itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint dev ui-readonly bench clean-data

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlops-assets demo

lint: $(STAMP)
	$(BIN)/ruff check mlops_assets mlops_assets_tests
	$(BIN)/ruff format --check mlops_assets mlops_assets_tests

test: $(STAMP) lint
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/python -m pytest

dev: $(STAMP)
	mkdir -p data/$${MLOPS_ENV:-dev}/dagster_home
	cp dagster.yaml data/$${MLOPS_ENV:-dev}/dagster_home/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/data/$${MLOPS_ENV:-dev}/dagster_home $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: $(STAMP)
	$(BIN)/mlops-assets bench --out bench-results/latest.json
