"""`python study/run_fewshot_grid.py ARGS` in a checkout: the study command (study/cli.py), as
`cloce-study ARGS` and `python -m study ARGS` anywhere the project is installed."""
import sys

from study.cli import main

if __name__ == "__main__":
    sys.exit(main())
