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
TUTORIAL_OUT := tutorial_output

.PHONY: demo test lint venv clean tutorials

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# torch 2.13.0 on a GPU machine: PyPI's build (CUDA). Without a GPU: this machine's local CPU wheel
	@# (pip's configured find-links), so no CUDA packages are downloaded. The pin is the same either way.
	@$(PIP) install $(CONSTRAINTS) --upgrade pip setuptools wheel > $(VENV)/install.log 2>&1 \
	    && if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
	        echo "GPU found: installing torch 2.13.0 (CUDA build)"; \
	        PIP_FIND_LINKS="" $(PIP) install $(CONSTRAINTS) "torch==2.13.0" >> $(VENV)/install.log 2>&1; \
	    else \
	        echo "no GPU: installing torch 2.13.0 (CPU build)"; \
	        $(PIP) install $(CONSTRAINTS) "torch==2.13.0" >> $(VENV)/install.log 2>&1; \
	    fi \
	    && $(PIP) install $(CONSTRAINTS) -e ".[all,dev]" >> $(VENV)/install.log 2>&1 \
	    || { grep -v "is ignored" $(VENV)/install.log | tail -40; echo "install failed: see $(VENV)/install.log"; exit 1; }
	@$(PY) -c "import scivae, scivae_cli, torch; print('installed scivae', scivae.__version__, '| torch', torch.__version__)"
	@touch $(STAMP)

demo: $(STAMP)
	@# --force replaces an earlier demo output only (a folder scivae did not write is refused, never deleted)
	$(VENV)/bin/scivae fit $(DEMO_DATA) --out $(DEMO_OUT) --force --n-top-genes 2000 --max-epochs 60
	@echo "demo results are in $(DEMO_OUT)/ (model/, embedded.h5ad, metrics.json, history.csv, PNG plots)"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

# Every tutorial end to end (full-length fits; SCIVAE_FAST=1 runs the short versions the test suite runs).
tutorials: $(STAMP)
	@mkdir -p $(TUTORIAL_OUT)
	@for t in tutorials/*.py; do \
	    echo "== $$t"; SCIVAE_TUTORIAL_OUT=$(TUTORIAL_OUT) $(PY) $$t || exit 1; \
	done
	@echo "tutorial figures are in $(TUTORIAL_OUT)/"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT) $(TUTORIAL_OUT) .pytest_cache .ruff_cache
