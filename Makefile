# Make targets are the interface. Every target installs what it needs first (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
RUNS_DIR ?= runs
NPROC ?= 1
RUN ?=

.PHONY: install demo train resume dashboard test bench lint clean-venv

install: $(STAMP)

$(STAMP): requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

demo: install  ## offline, CPU, about a minute: a real run on the bundled digits
	$(PY) -m engine train --preset demo --runs-dir $(RUNS_DIR) $(ARGS)

train: install  ## the s11 reference recipe on CIFAR-10 (override with ARGS="--epochs 30 ..."; NPROC=N for N GPUs)
ifeq ($(NPROC),1)
	$(PY) -m engine train --runs-dir $(RUNS_DIR) $(ARGS)
else
	$(VENV)/bin/torchrun --standalone --nproc_per_node $(NPROC) -m engine train --runs-dir $(RUNS_DIR) $(ARGS)
endif

resume: install  ## continue an interrupted run: make resume RUN=<run-id>
	@test -n "$(RUN)" || (echo "usage: make resume RUN=<run-id> (see: $(PY) -m engine list)" && exit 2)
	$(PY) -m engine resume $(RUN) --runs-dir $(RUNS_DIR)

dashboard: install  ## the browser app over runs/
	RUNS_DIR=$(RUNS_DIR) $(VENV)/bin/streamlit run dashboard/app.py

test: install
	$(PY) -m pytest -q $(ARGS)

bench: install
	$(PY) -m bench $(ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean-venv:
	rm -rf $(VENV)
