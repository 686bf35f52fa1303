"""A real Ray cluster and MLflow tracking server on this machine, and the chaos study run on it:
cluster.py (the cluster), processes.py (processes and ports, by id), chaos_study.py (the study,
its faults and checks), __main__.py (the command line; experiments/local_cluster.sh runs it)."""
