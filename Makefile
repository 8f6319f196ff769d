# ecompipe: `make run` and `make test` set everything up on a fresh clone (Python 3.11 and pip suffice).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help install run test lab bench strip clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@echo "Setting up $(VENV): Python packages for the pipeline (the first time takes about a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "  [1/3] uv, the installer"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	@echo "  [2/3] ecompipe and its dependencies"
	@$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -e ".[dev]"
	@echo "  [3/3] the ecompipe Jupyter kernel"
	@$(BIN)/python -c "from ecompipe.runner import ensure_kernel; ensure_kernel()"
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the project with its Jupyter kernel

run: install ## Run the whole pipeline at scale 1 (pass options: make run ARGS="--scale 10 --seed 7")
	$(BIN)/ecompipe run $(ARGS)

test: install ## Run the test suite (pass pytest options: make test ARGS="-k ingest")
	$(BIN)/python -m pytest $(ARGS)

lab: install ## Open JupyterLab on notebooks/ with the ecompipe kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

bench: install ## Print start-up, generation, ingest, transform and validation speed (bench/), on a warehouse of its own
	$(BIN)/python bench/bench_cli.py
	$(BIN)/python bench/bench_generate.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_transform.py
	$(BIN)/python bench/bench_validate.py --scales 1

strip: install ## Clear outputs from notebooks/ before committing
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb

clean: ## Stop the embedded warehouse and delete .venv, .warehouse and outputs/runs
	-test -x $(BIN)/ecompipe && $(BIN)/ecompipe db stop
	rm -rf $(VENV) .warehouse outputs/runs
