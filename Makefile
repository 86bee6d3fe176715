# One-command entry points (see README). Everything installs into ./.venv from this repo's files.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench setup setup-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

setup-dev: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	bash scripts/install_clis.sh

# The main job: a full multi-run session on the embedded SQLite store, streamed live.
demo: setup
	$(BIN)/asm demo

# Install everything and run the whole test suite with branch coverage.
test: setup-dev
	$(BIN)/python -m pytest -q --cov=agent_session_manager --cov-branch --cov-report=term-missing:skip-covered

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy --strict src

bench: setup-dev
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .coverage*
