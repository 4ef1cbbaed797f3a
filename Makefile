# make train: set-up + the demo run on built-in data.  make test: set-up + the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
STORE  := $(CURDIR)/mlruns
PORT   ?= 5000
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup train test test-fast lint ui server bench bench-big clean-runs browser

SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
BROWSER_PKGS ?= chromium chromium-driver

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

train: setup
	$(BIN)/alexnet-exp experiment=demo

# Two pytest workers: a CLI test mostly waits on one single-threaded child process, so two
# keep 2 cores busy. More would not help on 2 cores and each worker's TensorFlow takes ~1 GB.
# loadgroup: the tests that share a module's trained model (xdist_group) stay on one worker.
PYTEST_JOBS ?= 2
PYTEST_ARGS := -q -ra -n $(PYTEST_JOBS) --dist loadgroup

test: setup lint browser
	$(BIN)/python -m pytest $(PYTEST_ARGS) --durations=15

test-fast: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m "not slow"

# ruff, then the import contracts in pyproject.toml (layers, tracking as a sink, no cycles)
lint: setup
	$(BIN)/ruff check alexnet_exp tests scripts
	$(BIN)/lint-imports

ui: setup  # no GenAI job runner: nothing here submits jobs, and it slows the start
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(STORE)/mlflow.db \
	  --default-artifact-root $(STORE)/artifacts --host 127.0.0.1 --port $(PORT)

# The performance benchmarks on ../shared/data/flower_photos_224 (DATA=<class folders> to use
# another set): JSON under bench/, one summary line each; ~35 min on 2 cores. See
# scripts/BENCHMARKS.md.
DATA ?= $(CURDIR)/../shared/data/flower_photos_224
bench: setup
	$(BIN)/python scripts/bench_input.py --data $(DATA)
	$(BIN)/python scripts/bench_train.py --data $(DATA)
	$(BIN)/python scripts/bench_scaling.py --data $(DATA)
	$(BIN)/python scripts/bench_time_to_accuracy.py --data $(DATA)
	@echo; for f in bench/*.json; do \
	  $(BIN)/python -c "import json, sys; print(json.load(open(sys.argv[1]))['summary'])" $$f; done

# Issue 16's scaling run: an ImageNet-100-sized folder built from the flower photos (100 x 1,000
# JPEGs, ~2 GB under bench/, ~7 min once) and one epoch at 10k, 30k and 100k images with the
# default data settings; ~20 min on 2 cores. JSON in bench/scaling_synthetic.json.
bench-big: setup
	$(BIN)/python scripts/bench_scaling.py --synthetic $(CURDIR)/bench/synthetic100k

# An MLflow tracking server to try tracking=server (a team's runs in one place): SQLite and
# artifacts under mlruns/server/, on 127.0.0.1 only. Train against it with
#   alexnet-exp tracking=server tracking.uri=http://127.0.0.1:$(PORT)
# docs/scaling.md ("A team tracking server") has the PostgreSQL + object store set-up for a real
# team server.
SERVER_STORE ?= $(STORE)/server
server: setup
	mkdir -p $(SERVER_STORE)/artifacts
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server \
	  --backend-store-uri sqlite:///$(SERVER_STORE)/mlflow.db \
	  --artifacts-destination $(SERVER_STORE)/artifacts --host 127.0.0.1 --port $(PORT)

# Headless Chromium for tests/test_ui_browser.py; if it cannot be installed that test skips.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { echo "installing headless Chromium (Debian: $(BROWSER_PKGS)) for the UI test"; \
	    $(SUDO) apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PKGS) >/dev/null; } || \
	  echo "warning: could not install $(BROWSER_PKGS); tests/test_ui_browser.py will skip" >&2

clean-runs:
	rm -rf $(STORE)/mlflow.db $(STORE)/artifacts outputs multirun
