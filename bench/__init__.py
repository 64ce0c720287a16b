"""Benchmarks and the fault-injection suite (see bench/README.md).

Run from the repository root as modules, `.venv/bin/python -m bench.<name>` (or the `make`
targets), so that `tests.support`, the one process harness shared with the tests, imports.
"""
