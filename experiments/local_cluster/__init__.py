"""A real Ray cluster and MLflow tracking server on this machine, and the chaos study run on it:
cluster.py (the cluster), processes.py (processes and ports, by id), locks.py (its Ray token and
MLflow credentials), chaos_study.py (the study, its faults and checks), cli.py (the command line:
`python -m experiments.local_cluster`, which experiments/local_cluster.sh runs)."""
