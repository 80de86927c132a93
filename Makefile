# Make targets are the interface. Every target installs what it needs first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CMD := $(VENV)/bin/resnet-runs
STAMP := $(VENV)/.installed
ARGS ?=
RUNS_DIR ?= runs
NPROC ?= 1
RUN ?=

.PHONY: install demo train resume dashboard test bench lint clean-venv

install: $(STAMP)

# The project itself is installed in editable mode: `resnet-runs` and `python -m engine` work
# from any directory and see edits at once.
$(STAMP): requirements.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --no-deps --no-build-isolation --editable .
	touch $(STAMP)

demo: install  ## offline, CPU, about a minute: a real run on the bundled digits
	$(CMD) train --preset demo --runs-dir $(RUNS_DIR) $(ARGS)

train: install  ## the s11 reference recipe on CIFAR-10 (override with ARGS="--epochs 30 ..."; NPROC=N for N GPUs)
ifeq ($(NPROC),1)
	$(CMD) train --runs-dir $(RUNS_DIR) $(ARGS)
else
	$(VENV)/bin/torchrun --standalone --nproc_per_node $(NPROC) -m engine train --runs-dir $(RUNS_DIR) $(ARGS)
endif

resume: install  ## continue an interrupted run: make resume RUN=<run id, a unique start of one, or a run name>
	@test -n "$(RUN)" || (echo "usage: make resume RUN=<run id, a unique start of one, or a run name> (runs: $(CMD) list --runs-dir $(RUNS_DIR))" && exit 2)
	$(CMD) resume "$(RUN)" --runs-dir $(RUNS_DIR)

dashboard: install  ## the browser app over runs/ (RUNS_DIR=... for another folder)
	$(CMD) dashboard --runs-dir $(RUNS_DIR) $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

bench: install
	$(PY) -m bench $(ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
