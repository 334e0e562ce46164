# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# torch is pinned through constraints.txt so that no later install can swap it for another build.
CONSTRAINTS := -c constraints.txt
STAMP := $(VENV)/.installed
DEMO_DATA := datasets/pbmc3k/pbmc3k_raw.h5ad
DEMO_OUT := demo_output

.PHONY: demo test lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip setuptools wheel 2>&1 | grep -v "is ignored" || true
	@# On a machine with an NVIDIA GPU, torch 2.13.0 from PyPI is the CUDA build; without one, this
	@# machine's local index serves the CPU wheel for the same pin, and no CUDA packages are downloaded.
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	    echo "GPU found: installing CUDA torch 2.13.0"; $(PIP) install $(CONSTRAINTS) "torch==2.13.0" 2>&1 | grep -v "is ignored" ; \
	else \
	    echo "no GPU: installing CPU torch 2.13.0"; $(PIP) install $(CONSTRAINTS) "torch==2.13.0" 2>&1 | grep -v "is ignored" ; \
	fi; $(PY) -c "import torch" || { echo "torch install failed"; exit 1; }
	@$(PIP) install $(CONSTRAINTS) -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	@$(PY) -c "import scivae, scivae_cli, torch; print('scivae', scivae.__version__, '| torch', torch.__version__)"
	@touch $(STAMP)

demo: $(STAMP)
	@rm -rf $(DEMO_OUT)
	$(VENV)/bin/scivae fit $(DEMO_DATA) --out $(DEMO_OUT) --n-top-genes 2000 --max-epochs 60
	@echo "demo results are in $(DEMO_OUT)/ (model/, embedded.h5ad, metrics.json, history.csv, PNG plots)"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
