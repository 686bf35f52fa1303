"""Tracking: MLflow's parent run per study and child run per trial, found by tag (runs.py), the
retry policy for a remote tracking server (retry.py), links into the MLflow UI (ui_links.py)."""
