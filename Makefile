# HookBridge: the two commands a newcomer runs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= auto

.PHONY: demo test lint fmt fuzz bench clean install schemas images

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,demo,bench,otlp]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/hookbridge demo

# The generated JSON Schemas in config/ (a test fails when they drift from the code).
schemas: $(STAMP)
	$(BIN)/hookbridge config schema > config/hookbridge.schema.json
	$(BIN)/hookbridge events schema > config/events.schema.json

# The settings page's pictures in docs/images/, taken in headless Chromium.
images: $(STAMP)
	UPDATE_DOC_IMAGES=1 $(BIN)/python -m pytest -p no:cacheprovider tests/test_dashboard_settings.py

lint: $(STAMP)
	$(BIN)/ruff check bridge tests bench
	$(BIN)/ruff format --check bridge tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m tests.support.layout bridge

test: lint
	$(BIN)/python tests/support/system_deps.py
	$(BIN)/coverage erase
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --cov=bridge --cov-report=term --cov-fail-under=70 tests

fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests/test_fuzz*.py

bench: $(STAMP)
	$(BIN)/python -m bench

fmt: $(STAMP)
	$(BIN)/ruff format bridge tests bench
	$(BIN)/ruff check --fix bridge tests bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage* htmlcov
