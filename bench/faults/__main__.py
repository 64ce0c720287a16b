"""`python -m bench.faults`: the fault-injection suite (see bench/faults/__init__.py)."""

import sys

from bench.faults.run import main

sys.exit(main())
