"""`python -m experiments.local_cluster ...` (experiments/local_cluster.sh): the local cluster recipe's command line."""
import sys

from experiments.local_cluster.cli import main

sys.exit(main())
