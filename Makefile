# `make demo` and `make test` work on a fresh machine: each creates .venv if absent, installs the
# CPU build of torch when no torch is present (a bare `torch` requirement would pull a CUDA build),
# installs the project with its dev extra, then runs.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.demix-installed
DEMO_OUT ?= out/demo
DEMO_RUNS ?= runs/demo
DB = $(DEMO_OUT)/manifest.duckdb
BIN = $(VENV)/bin
# Demo budgets sized for ~30 minutes on 2 CPU cores; every step skips finished work on rerun.
DEMO_BASE_TOKENS ?= 1M
DEMO_COMPONENT_TOKENS ?= 400K
DEMO_TARGET ?= 20M

.PHONY: install demo demo-suite lint test bench clean

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# build -> manifest -> base -> components -> search (merged proxies) -> resolve -> release -> summary
demo: install
	$(PY) -m pipelines.build_corpus --recipe corpus/recipes/demo.yaml --out $(DEMO_OUT)
	$(BIN)/manifests summary --db $(DB)
	$(BIN)/proxy base --db $(DB) --config tiny --tokens $(DEMO_BASE_TOKENS) --seq-len 256 --batch-size 16 \
		--lr 3e-3 --out $(DEMO_RUNS)/base
	$(BIN)/proxy components --base $(DEMO_RUNS)/base --db $(DB) --general-share 0.5 \
		--tokens $(DEMO_COMPONENT_TOKENS) --seq-len 256 --batch-size 16 --lr 3e-3 --out $(DEMO_RUNS)/components
	$(BIN)/proxy search --components $(DEMO_RUNS)/components --db $(DB) --iterations 3 --per-iteration 32 \
		--pool 20000 --top-k 128 --seed 0 --out $(DEMO_RUNS)/search
	$(BIN)/mixer resolve --mixture $(DEMO_RUNS)/search/best_mixture.json --db $(DB) --target $(DEMO_TARGET) \
		--seq-len 256 --out $(DEMO_RUNS)/plan.json
	$(BIN)/mixer release --plan $(DEMO_RUNS)/plan.json --out $(DEMO_RUNS)/release --samples 1M --overwrite
	$(PY) scripts/demo_summary.py --corpus $(DEMO_OUT) --runs $(DEMO_RUNS)

# The demo's search again, ranked by the offline benchmark suite through lm-eval (after `make demo`; ~5 min).
demo-suite: demo
	$(BIN)/proxy search --components $(DEMO_RUNS)/components --db $(DB) --suite offline --objective suite --limit 50 \
		--iterations 2 --per-iteration 8 --pool 5000 --top-k 16 --seed 0 --out $(DEMO_RUNS)/search-suite

# ruff (pinned in the dev extra; configuration in pyproject.toml): `ruff format .` fixes what lint reports
lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: install lint
	$(PY) -m pytest tests

clean:
	rm -rf out runs
