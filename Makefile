# make run   install, create and migrate the local database, serve both functions
# make test  install and run the test suite (make test-e2e: the long end-to-end runs)
# Both use the PostgreSQL at 127.0.0.1:5432 if one answers there (or DATABASE_URL), else a
# private one from PyPI kept in .local/postgres (DATABASE_URL=embedded asks for it).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Test processes: most tests wait on servers and PostgreSQL, so one more than two cores.
TEST_WORKERS ?= 3

.PHONY: install run migrate test test-e2e test-fast test-unit lint schema bench bench-before-after drill clean clean-db

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
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -q -m "not e2e"

# The whole system and long runs (the benchmark in smoke mode, a small drill): CI runs them.
test-e2e: install
	$(BIN)/python -m pytest -n 2 -q -m e2e

# While developing: no servers, no subprocesses.
test-fast: install
	$(BIN)/python -m pytest -m "not http" -q

test-unit: install
	$(BIN)/python -m pytest -m unit -q

lint: install
	$(BIN)/ruff check shared functions tests benchmarks

# sql/schema.sql: the schema after every migration (a test checks it is current).
schema: install
	$(BIN)/meeting-links schema > sql/schema.sql

# Benchmarks (about 15 minutes) and the full failure drill: not part of `make test`.
bench: install
	$(BIN)/python -m benchmarks.run

# The end-to-end benchmark of another checkout (BEFORE=path, with its own `make install`)
# and this one, side by side in one run: docs/benchmarks-before-after.md.
bench-before-after: install
	$(BIN)/python -m benchmarks.before_after --before $(BEFORE)

drill: install
	$(BIN)/python -m benchmarks.drill
	STOP_REPEATS=20 $(BIN)/python -m pytest -q tests/e2e/test_local_stack.py -k ctrl_c_to_the_process_group
	HYPOTHESIS_PROFILE=drill $(BIN)/python -m pytest -m drill

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Stops and removes the embedded PostgreSQL and its data (nothing else uses .local/postgres).
clean-db: install
	$(BIN)/python -m meeting_links.db.embedded
