"""MLflow: one parent run per study, one nested child run per trial, found by tag.

Ray's MLflowLoggerCallback keeps its trial -> run map in memory only, so a restored study
would log every trial twice; here a trial's run is looked up by its `cloce.trial_key` tag
before one is created. Everything goes through `MlflowClient` with explicit run ids:
no process-global "active run", so the driver and a trial's rank-0 worker never collide.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

STUDY_TAG = "cloce.study_key"
TRIAL_TAG = "cloce.trial_key"
PARENT_TAG = "mlflow.parentRunId"
# Never logged as parameters: a tracking URI can carry credentials.
SECRET_WORDS = ("password", "token", "secret", "credential", "tracking_uri", "api_key")


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    """A SQLite store in the working directory: no server to start."""
    return f"sqlite:///{Path(cwd or os.getcwd()).resolve() / 'mlflow.db'}"


def resolve_tracking_uri(cli_value: str | None) -> str:
    uri = cli_value or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    # sqlite:///runs.db is relative to the working directory, which a trial's process does not
    # share with the driver: make it absolute here (sqlite:////abs/path/runs.db).
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and ":memory:" not in uri:
        uri = prefix + str(Path(uri[len(prefix):]).expanduser().resolve())
    return uri


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def safe_params(params: dict[str, Any]) -> dict[str, str]:
    """Flat string params, without anything that looks like a secret, within MLflow's limits."""
    flat: dict[str, str] = {}
    for key, value in _flatten(params).items():
        if any(word in key.lower() for word in SECRET_WORDS):
            continue
        flat[key[:250]] = str(value)[:6000]
    return flat


def _flatten(params: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= _flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def ensure_experiment(mlflow_client, name: str) -> str:
    existing = mlflow_client.get_experiment_by_name(name)
    return existing.experiment_id if existing else mlflow_client.create_experiment(name)


def find_run(mlflow_client, experiment_id: str, tag: str, value: str, parent_id: str | None = None):
    query = f"tags.`{tag}` = '{value}'"
    if parent_id:
        query += f" and tags.`{PARENT_TAG}` = '{parent_id}'"
    runs = mlflow_client.search_runs([experiment_id], filter_string=query, max_results=1)
    return runs[0] if runs else None


def start_parent_run(uri: str, experiment: str, study_key: str, params: dict, tags: dict,
                     run_name: str | None = None) -> tuple[str, str]:
    """The study's parent run (reused when resuming): (experiment_id, run_id)."""
    mlflow_client = client(uri)
    experiment_id = ensure_experiment(mlflow_client, experiment)
    run = find_run(mlflow_client, experiment_id, STUDY_TAG, study_key)
    if run is None:
        run = mlflow_client.create_run(experiment_id, run_name=run_name or study_key, tags={STUDY_TAG: study_key, **tags})
        for key, value in safe_params(params).items():
            mlflow_client.log_param(run.info.run_id, key, value)
    else:
        mlflow_client.update_run(run.info.run_id, status="RUNNING")
    return experiment_id, run.info.run_id


def child_run(uri: str, experiment_id: str, parent_id: str, trial_key: str, params: dict, tags: dict) -> str:
    """The trial's run under the parent: found by its key, created only the first time."""
    mlflow_client = client(uri)
    run = find_run(mlflow_client, experiment_id, TRIAL_TAG, trial_key, parent_id)
    if run is not None:
        mlflow_client.update_run(run.info.run_id, status="RUNNING")
        return run.info.run_id
    run = mlflow_client.create_run(
        experiment_id, run_name=trial_key, tags={TRIAL_TAG: trial_key, PARENT_TAG: parent_id, **tags}
    )
    for key, value in safe_params(params).items():
        mlflow_client.log_param(run.info.run_id, key, value)
    return run.info.run_id


def log_metrics(uri: str, run_id: str, metrics: dict[str, Any], step: int | None = None) -> None:
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now, step or 0)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ]
    if batch:
        client(uri).log_batch(run_id, metrics=batch)


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(uri).set_terminated(run_id, status=status)


def log_text(uri: str, run_id: str, text: str, artifact_file: str) -> None:
    client(uri).log_text(run_id, text, artifact_file)


def log_json(uri: str, run_id: str, obj: Any, artifact_file: str) -> None:
    log_text(uri, run_id, json.dumps(obj, indent=2, default=str), artifact_file)


def log_files(uri: str, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    mlflow_client = client(uri)
    for path in paths:
        mlflow_client.log_artifact(run_id, str(path), artifact_path)


def child_runs(uri: str, experiment_id: str, parent_id: str) -> list:
    mlflow_client = client(uri)
    return mlflow_client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'", max_results=10000)



def close_stopped_runs(uri: str, experiment_id: str, parent_id: str, variant: str, k: int, stage: str) -> int:
    """Trials a scheduler stopped early never report an end: mark their runs KILLED."""
    mlflow_client = client(uri)
    query = (f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.variant = '{variant}' and tags.k = '{k}' "
             f"and tags.stage = '{stage}' and attributes.status = 'RUNNING'")
    runs = mlflow_client.search_runs([experiment_id], filter_string=query, max_results=10000)
    for run in runs:
        mlflow_client.set_tag(run.info.run_id, "stopped_early", "true")
        mlflow_client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)
