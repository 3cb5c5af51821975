VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test lint

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,text]"

setup: $(PY)

test: setup
	$(PY) -m ruff check src tests
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check src tests
