"""`python -m study ARGS`: the study command (study/cli.py)."""
import sys

from study.cli import main

sys.exit(main())
