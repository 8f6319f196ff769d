# ecompipe: `make run` and `make test` set everything up on a fresh clone (Python 3.11 and pip suffice).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=
# The lock's versions, into .venv; --inexact keeps uv itself, which lives there too.
UV_SYNC = $(BIN)/uv sync --locked --inexact --compile-bytecode --python $(BIN)/python

.DEFAULT_GOAL := help
.PHONY: help install install-airflow run test airflow lab bench strip clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml uv.lock
	@echo "Setting up $(VENV): Python packages for the pipeline, the versions of uv.lock (the first time takes about a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "  [1/3] uv, the installer"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	@echo "  [2/3] ecompipe and its dependencies"
	@$(UV_SYNC) --extra dev
	@echo "  [3/3] the ecompipe Jupyter kernel"
	@$(BIN)/python -c "from ecompipe.runner import ensure_kernel; ensure_kernel()"
	@touch $@

$(VENV)/.installed-airflow: $(VENV)/.installed
	@echo "Adding Airflow and its papermill provider to $(VENV) (about a minute the first time)"
	@$(UV_SYNC) --extra dev --extra airflow
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the project (uv.lock's versions) with its Jupyter kernel

install-airflow: $(VENV)/.installed-airflow ## The same, with Airflow (for make test and make airflow)

run: install ## Run the whole pipeline at scale 1 (pass options: make run ARGS="--scale 10 --seed 7")
	$(BIN)/ecompipe run $(ARGS)

test: install-airflow ## Run the test suite (pass pytest options: make test ARGS="-k ingest")
	$(BIN)/python -m pytest $(ARGS)

airflow: install-airflow ## Start Airflow here (UI on http://127.0.0.1:8080), on the embedded warehouse
	$(BIN)/python -m ecompipe.local_airflow

lab: install ## Open JupyterLab on notebooks/ with the ecompipe kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: install ## The six-stage pipeline at scales 1 and 10 against its baselines, on a warehouse of its own (ARGS="--with-100" adds 100)
	$(BIN)/python bench/bench_pipeline.py $(ARGS)

strip: install ## Clear outputs from notebooks/ before committing
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb

clean: ## Stop the embedded warehouse and delete .venv, .warehouse, .airflow and outputs/runs
	-test -x $(BIN)/ecompipe && $(BIN)/ecompipe db stop
	rm -rf $(VENV) .warehouse .warehouse-bench .airflow outputs/runs outputs/index.html
