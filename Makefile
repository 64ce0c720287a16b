# MECC Prompts: `make run` runs the whole system; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast install seed lint typecheck faults bench bench-ingest bench-rules bench-pipeline clean migration

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

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-fast: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not browser"

lint: install
	$(BIN)/ruff check mecc tests bench

typecheck: install
	$(BIN)/mypy

faults: install
	$(BIN)/python bench/faults.py

bench: bench-rules bench-ingest bench-pipeline

bench-ingest: install
	$(BIN)/python bench/ingest.py

bench-rules: install
	$(BIN)/python bench/rules.py

bench-pipeline: install
	$(BIN)/python bench/pipeline.py

# Regenerate a migration from the models: make migration MESSAGE="add x"
migration: install
	$(BIN)/python -c "from alembic import command; from mecc.store.migrate import alembic_config; \
	command.revision(alembic_config('sqlite:///var/migration-scratch.db'), message='$(MESSAGE)', autogenerate=True)"

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
