"""The study command with injected faults plugged in: `python -m tests.support.faulty_study ARGS` takes
study/run_fewshot_grid.py's arguments and runs that study with the faults of `CLOCE_FAULTS`
(tests/support/faults.py says how to write them). Only tests and the chaos demo run it."""
from __future__ import annotations

import sys

from study.cli import main
from tests.support.faults import FaultInjector

if __name__ == "__main__":
    sys.exit(main(plugins=[FaultInjector.from_env()]))
