# MECC Prompts: `make run` runs the whole system; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every dependency of the package and its test extra, pinned with its hashes (`make lock`).
LOCK := requirements.lock

.PHONY: run test test-fast check install lock audit seed lint typecheck imports faults bench bench-ingest bench-rules bench-pipeline bench-fuzz clean migration

# Exactly what the lock file says, each download checked against its hash; then the project
# itself, which adds nothing (--no-deps).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Regenerate the lock file after changing a dependency in pyproject.toml, then `make install`.
lock:
	test -x $(BIN)/uv || $(MAKE) install
	$(BIN)/uv pip compile pyproject.toml --extra test --generate-hashes --python-version 3.11 \
		--custom-compile-command "make lock" --quiet --output-file $(LOCK)

# Known vulnerabilities in the locked dependencies (pip-audit; README, "Supply chain").
audit: install
	$(BIN)/python scripts/audit_dependencies.py

seed: install
	$(BIN)/mecc seed

run: seed
	$(BIN)/mecc run

# Branch coverage of the code run in the test process (gunicorn and worker processes the
# integration tests start are not measured). Measured 93% (statements and branches) over
# the whole suite in a fresh clone under .ci/run, 2026-12-04; the floor sits a few points under it.
COVERAGE := --cov=mecc --cov-branch --cov-report=term:skip-covered --cov-fail-under=88

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

# The long schemathesis run (about 25 minutes); its figures go to bench/RESULTS.md.
bench-fuzz: install
	$(BIN)/python -m bench.fuzz_api

# Regenerate a migration from the models: make migration MESSAGE="add x"
migration: install
	$(BIN)/python -c "from alembic import command; from mecc.store.migrate import alembic_config; \
	command.revision(alembic_config('sqlite:///var/migration-scratch.db'), message='$(MESSAGE)', autogenerate=True)"

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
