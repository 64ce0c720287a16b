"""Start-up cost of the fact catalogue and value sets, against reading the same YAML files.

The value sets are built from the published code lists (about 10,000 condition and 7,500
medicine codes); every process (API worker, Celery child, CLI) loads them once at start-up.
The baseline is yaml.safe_load of the same files in the same run, so the ratio says what our
checking and indexing add on top of parsing.

    .venv/bin/python bench/catalogue.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from mecc.clinical.catalogue import load_catalogue

CONFIG = Path(__file__).resolve().parent.parent / "config"


def _timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    files = [CONFIG / "facts.yaml", CONFIG / "valuesets.yaml"]
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    baseline = _timed(lambda: [yaml.load(f.read_text(), Loader=loader)  # noqa: S506 - safe loader
                               for f in files], args.repeat)
    product = _timed(lambda: load_catalogue(CONFIG), args.repeat)
    print(f"yaml parse of facts + value sets: {baseline * 1000:.1f} ms (median of {args.repeat})")
    print(f"load_catalogue:                  {product * 1000:.1f} ms ({product / baseline:.2f}x)")


if __name__ == "__main__":
    main()
