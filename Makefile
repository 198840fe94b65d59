# The README's commands. Every target bootstraps .venv/ from the pinned lock itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint dev ui-readonly prod-ops bench system-deps

# Every UI target resolves MLOPS_ENV and MLOPS_DATA_DIR as `mlops-assets` does: the Dagster home
# is $MLOPS_DATA_DIR/<env>/dagster_home, holding this repository's dagster.yaml.
SERVICES = $(BIN)/python -m mlops_assets.services
DEV_HOST ?= 127.0.0.1
DEV_PORT ?= 3000
# Beside the Dagster UI, `make dev` serves the environment's MLflow UI and its saved reports; the
# links in asset metadata and alerts point at these ports (MLOPS_MLFLOW_URL, MLOPS_REPORTS_URL).
MLFLOW_PORT ?= 5000
REPORTS_PORT ?= 5001
# ... and the Evidently UI with the business dashboard (MLOPS_DASHBOARD_URL).
DASHBOARD_PORT ?= 5003
# The read-only product-manager UI: the prod environment's webserver (or $MLOPS_ENV's), no
# launches or toggles.
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3001
UI_REPORTS_PORT ?= 5002
UI_DASHBOARD_PORT ?= 5004

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlops-assets demo

lint: $(STAMP)
	$(BIN)/ruff check mlops_assets mlops_assets_tests benchmarks
	$(BIN)/ruff format --check mlops_assets mlops_assets_tests benchmarks
	$(BIN)/mypy

# The deploy tests start a private PostgreSQL server and the UI tests drive Debian's Chromium
# (never `playwright install`); install each only if it is missing.
system-deps:
	@if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		echo "system-deps: PostgreSQL server found: $$(ls /usr/lib/postgresql/*/bin/postgres | tail -n 1)"; \
	else \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "system-deps: no PostgreSQL server; running: $$sudo apt-get update && $$sudo apt-get install -y postgresql"; \
		$$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y postgresql; \
	fi
	@if [ -x /usr/bin/chromium ]; then \
		echo "system-deps: Chromium found: /usr/bin/chromium"; \
	else \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "system-deps: no /usr/bin/chromium; running: $$sudo apt-get update && $$sudo apt-get install -y chromium"; \
		$$sudo apt-get update && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y chromium; \
	fi

test: $(STAMP) system-deps lint
	$(BIN)/dagster definitions validate -w workspace.yaml
	$(BIN)/python -m pytest -n 2 --dist loadgroup

dev: $(STAMP)
	$(SERVICES) dev --host $(DEV_HOST) --port $(DEV_PORT) --mlflow-port $(MLFLOW_PORT) \
		--reports-port $(REPORTS_PORT) --dashboard-port $(DASHBOARD_PORT)

ui-readonly: $(STAMP)
	$(SERVICES) ui-readonly --host $(UI_HOST) --port $(UI_PORT) --reports-port $(UI_REPORTS_PORT) \
		--dashboard-port $(UI_DASHBOARD_PORT)

# The read-only webserver plus the environment's daemon (automation, sensors, freshness), so
# prod runs by itself while product managers browse it.
prod-ops: $(STAMP)
	$(SERVICES) prod-ops --host $(UI_HOST) --port $(UI_PORT) --reports-port $(UI_REPORTS_PORT) \
		--dashboard-port $(UI_DASHBOARD_PORT)

bench: $(STAMP)
	$(BIN)/mlops-assets bench --out bench-results/latest.json
