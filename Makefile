# MECC Prompts: `make run` runs the whole system; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast check install seed lint typecheck imports faults bench bench-ingest bench-rules bench-pipeline clean migration

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

seed: install
	$(BIN)/mecc seed

run: seed
	$(BIN)/mecc run

# Branch coverage of the code run in the test process (gunicorn and worker processes the
# integration tests start are not measured); the floor sits a few points under the figure.
COVERAGE := --cov=mecc --cov-branch --cov-report=term:skip-covered --cov-fail-under=60

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider $(COVERAGE)

test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not browser"

# Lint, types and architecture: what CI checks before it runs the suite.
check: lint typecheck imports

lint: install
	$(BIN)/ruff check mecc tests bench

typecheck: install
	$(BIN)/mypy

# The import contracts in pyproject.toml [tool.importlinter]: pure core, views, layers.
imports: install
	$(BIN)/lint-imports --no-cache

faults: install
	$(BIN)/python -m bench.faults

bench: bench-rules bench-ingest bench-pipeline

bench-ingest: install
	$(BIN)/python -m bench.ingest

bench-rules: install
	$(BIN)/python -m bench.rules

bench-pipeline: install
	$(BIN)/python -m bench.pipeline

# Regenerate a migration from the models: make migration MESSAGE="add x"
migration: install
	$(BIN)/python -c "from alembic import command; from mecc.store.migrate import alembic_config; \
	command.revision(alembic_config('sqlite:///var/migration-scratch.db'), message='$(MESSAGE)', autogenerate=True)"

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
