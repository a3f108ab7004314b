# make run   install, create and migrate the local database, serve both functions
# make test  install and run the test suite (needs PostgreSQL at 127.0.0.1:5432)
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install run migrate test test-fast lint bench drill clean

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/meeting-links local

migrate: install
	$(BIN)/meeting-links migrate

test: install
	$(BIN)/python -m pytest

# While developing: no servers, no subprocesses (about 20 seconds).
test-fast: install
	$(BIN)/python -m pytest -m "not http" -q

lint: install
	$(BIN)/ruff check shared functions tests benchmarks

# Benchmarks (about 15 minutes) and the full failure drill: not part of `make test`.
bench: install
	$(BIN)/python -m benchmarks.run

drill: install
	$(BIN)/python -m benchmarks.drill
	HYPOTHESIS_PROFILE=drill $(BIN)/python -m pytest -m drill

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
