#!/usr/bin/env bash
# A real Ray cluster (head with 0 CPUs + two 2-CPU worker nodes) and an MLflow tracking server
# on this machine, Ray token auth on (a new token in ROOT/secrets/ray_auth_token, mode 0600, given
# to every node and client as RAY_AUTH_MODE=token + RAY_AUTH_TOKEN_PATH), a small study submitted
# with `ray job submit`, a worker node killed and the
# tracking server restarted mid-study, the checks, then everything stopped by process id
# (never `ray stop`). The code is experiments/local_cluster/cli.py (this command line),
# experiments/local_cluster/cluster.py (the cluster), experiments/local_cluster/chaos_study.py (the study, its faults and checks),
# tests/support/tiny_inputs.py (the model and data it trains on) and experiments/local_cluster/processes.py (processes by id);
# tests/test_local_cluster.py runs it too.
#
#   experiments/local_cluster.sh                    # demo: start -> submit -> faults -> checks -> stop
#   experiments/local_cluster.sh demo --no-faults   # the same study without the faults
#   experiments/local_cluster.sh demo --keep        # leave the cluster up afterwards
#   experiments/local_cluster.sh start [--root R]   # start it, print its addresses
#   experiments/local_cluster.sh stop --root R      # stop what start started in R
#
# PYTHON: the interpreter with the project, ray[default] and mlflow (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "${PYTHON:-python}" -m experiments.local_cluster "$@"
