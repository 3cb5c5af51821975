VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint mutate

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,text]"

setup: $(PY)

demo: setup
	mkdir -p out
	$(PY) -m longlive_cli render timelines/demo.yaml --overwrite
	@echo "open out/demo.mp4 (settings and timings in out/demo.json)"

# One thread per process: several tests run renders in parallel child processes on a 2-core machine.
# scripts/test-deps.sh installs chromium for the browser test where apt allows (else that test says why it skips).
test: setup
	bash scripts/test-deps.sh
	$(PY) -m ruff check src tests scripts
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check src tests scripts
	$(PY) -m ruff format --check src tests scripts

# Mutation testing of timeline, engine, sampler, KV cache, render and video (see [tool.mutmut]); too slow for CI.
# MUTANTS narrows the run by name, e.g. make mutate MUTANTS='longlive_cli.timeline*'; PYTEST_ADDOPTS narrows the tests.
MUTANTS ?=
mutate: setup
	rm -rf mutants
	set -f; HYPOTHESIS_PROFILE=mutation OMP_NUM_THREADS=1 $(PY) -m mutmut run --max-children 2 $(MUTANTS)
	$(PY) -m mutmut results
