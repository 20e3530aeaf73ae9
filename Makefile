# `make demo` and `make test` work on a fresh machine: each creates .venv if absent, installs the
# CPU build of torch when no torch is present (a bare `torch` requirement would pull a CUDA build),
# installs the project with its dev extra, then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.demix-installed
DEMO_OUT ?= out/demo
DEMO_RUNS ?= runs/demo

.PHONY: install demo test bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m pipelines.build_corpus --recipe corpus/recipes/demo.yaml --out $(DEMO_OUT)
	$(VENV)/bin/manifests summary --db $(DEMO_OUT)/manifest.duckdb

test: install
	$(PY) -m pytest tests

clean:
	rm -rf out runs
