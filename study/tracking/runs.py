"""MLflow: one parent run per study, one nested child run per trial, found by tag.

Ray's MLflowLoggerCallback keeps its trial -> run map in memory only, so a restored study
would log every trial twice; here a trial's run is looked up by its `cloce.trial_key` tag
before one is created. Everything goes through `MlflowClient` with explicit run ids:
no process-global "active run", so the driver and a trial's rank-0 worker never collide.

A tracking server that is down (restarted, overloaded) is waited for: every call below
retries (study/tracking/retry.py: `retrying`), then raises `TrackingUnavailable`. A trial's
rank-0 worker logs each epoch before it reports that epoch's checkpoint, so a trial that
gives up fails with that reason and is retried from the previous checkpoint, logging the
epoch again: a run is never silently missing metrics. Each call is safe to repeat: a run is
looked up by its key before one is created, a metric keeps the timestamp of its first try
(MLflow stores an identical metric once), tags, params and artifacts are overwritten with
the same value. The links to a study in the MLflow UI are in study/tracking/ui_links.py.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from study.tracking.retry import _MLFLOW_HTTP_RETRY_ENV, is_remote, retrying

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

    if is_remote(uri):
        for key, value in _MLFLOW_HTTP_RETRY_ENV.items():
            os.environ.setdefault(key, value)
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


@retrying
def start_parent_run(uri: str, experiment: str, study_key: str, params: dict, tags: dict,
                     run_name: str | None = None) -> tuple[str, str]:
    """The study's parent run (reused when resuming): (experiment_id, run_id)."""
    mlflow_client = client(uri)
    experiment_id = ensure_experiment(mlflow_client, experiment)
    run = find_run(mlflow_client, experiment_id, STUDY_TAG, study_key)
    if run is None:
        run = mlflow_client.create_run(experiment_id, run_name=run_name or study_key, tags={STUDY_TAG: study_key, **tags})
        log_params(mlflow_client, run.info.run_id, params)
    else:
        mlflow_client.update_run(run.info.run_id, status="RUNNING")
    return experiment_id, run.info.run_id


@retrying
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
    log_params(mlflow_client, run.info.run_id, params)
    return run.info.run_id


# MLflow takes at most 100 params in one batch (its REST limit, enforced by every store).
PARAMS_PER_BATCH = 100


def log_params(mlflow_client, run_id: str, params: dict) -> None:
    """The run's params in as few calls as MLflow takes: one call a param was one SQLite
    transaction each (43 for a trial), the larger part of a trial's tracking time (issue 26)."""
    from mlflow.entities import Param

    batch = [Param(key, value) for key, value in safe_params(params).items()]
    for start in range(0, len(batch), PARAMS_PER_BATCH):
        mlflow_client.log_batch(run_id, params=batch[start:start + PARAMS_PER_BATCH])


def log_metrics(uri: str, run_id: str, metrics: dict[str, Any], step: int | None = None,
                timestamp_ms: int | None = None) -> None:
    from mlflow.entities import Metric

    now = timestamp_ms or int(time.time() * 1000)
    batch = [
        Metric(key, float(value), now, step or 0)
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ]
    if batch:
        # The timestamp is fixed before any retry: a batch the server stored but whose answer
        # was lost is stored once, not twice.
        _log_batch(uri, run_id, batch)


@retrying
def logged_steps(uri: str, run_id: str, key: str) -> set[int]:
    return {m.step for m in client(uri).get_metric_history(run_id, key)}


def log_epoch_metrics(uri: str, run_id: str, metrics: dict[str, Any], step: int, key: str = "val_micro_f1",
                      logged: set[int] | None = None) -> bool:
    """An epoch's metrics, once per run: an attempt that restarts from an earlier checkpoint
    (or from none: a lost node, a checkpoint interval) trains some epochs again, and their
    metrics are not logged a second time (MLflow would keep both points). Returns whether it logged.
    The points carry the time they were measured, however long the server took to answer.
    `logged`: the run's steps of `key` as the caller knows them (an attempt reads them once,
    `logged_steps`, and this adds each step it logs); None: read them now."""
    measured = int(time.time() * 1000)
    if logged is None:
        logged = logged_steps(uri, run_id, key) if key in metrics else set()
    if key in metrics and step in logged:
        return False
    log_metrics(uri, run_id, metrics, step=step, timestamp_ms=measured)
    logged.add(step)
    return True


@retrying
def _log_batch(uri: str, run_id: str, batch: list) -> None:
    client(uri).log_batch(run_id, metrics=batch)


@retrying
def set_tags(uri: str, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    client(uri).log_batch(run_id, tags=[RunTag(key, str(value)[:5000]) for key, value in tags.items()])


@retrying
def get_tag(uri: str, run_id: str, key: str) -> str | None:
    return client(uri).get_run(run_id).data.tags.get(key)


@retrying
def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(uri).set_terminated(run_id, status=status)


@retrying
def log_text(uri: str, run_id: str, text: str, artifact_file: str) -> None:
    client(uri).log_text(run_id, text, artifact_file)


def log_json(uri: str, run_id: str, obj: Any, artifact_file: str) -> None:
    log_text(uri, run_id, json.dumps(obj, indent=2, default=str), artifact_file)


@retrying
def log_files(uri: str, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    mlflow_client = client(uri)
    for path in paths:
        mlflow_client.log_artifact(run_id, str(path), artifact_path)


@retrying
def child_runs(uri: str, experiment_id: str, parent_id: str) -> list:
    mlflow_client = client(uri)
    return mlflow_client.search_runs([experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'", max_results=10000)



@retrying
def close_stopped_runs(uri: str, experiment_id: str, parent_id: str, variant: str, k: int) -> int:
    """Trials a scheduler stopped early never report an end: mark their runs KILLED (called
    once the cell's Tuner has ended, so none of its runs is still training)."""
    mlflow_client = client(uri)
    query = (f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.variant = '{variant}' and tags.k = '{k}' "
             f"and attributes.status = 'RUNNING'")
    runs = mlflow_client.search_runs([experiment_id], filter_string=query, max_results=10000)
    for run in runs:
        mlflow_client.set_tag(run.info.run_id, "stopped_early", "true")
        mlflow_client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"  # where MLflow lists a run's table artifacts


@retrying
def log_table(uri: str, run_id: str, data: dict[str, list], artifact_file: str) -> None:
    """A table artifact (`MlflowClient.log_table`: JSON in pandas' "split" layout, listed in the
    run's `mlflow.loggedArtifacts` tag; `MlflowClient.load_table` reads it back), replaced when
    it is there already: log_table itself would append the rows to it (a resumed study's table
    twice)."""
    import posixpath
    import tempfile

    mlflow_client = client(uri)
    folder = posixpath.dirname(artifact_file) or None
    if not any(item.path == artifact_file for item in mlflow_client.list_artifacts(run_id, folder)):
        mlflow_client.log_table(run_id, data, artifact_file)
        return
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / posixpath.basename(artifact_file)
        pd.DataFrame(data).to_json(path, orient="split", index=False, date_format="iso")
        mlflow_client.log_artifact(run_id, str(path), folder)
    listed = json.loads(mlflow_client.get_run(run_id).data.tags.get(LOGGED_ARTIFACTS_TAG, "[]"))
    entry = {"path": artifact_file, "type": "table"}
    if entry not in listed:  # a first try that wrote the file but not the tag
        mlflow_client.set_tag(run_id, LOGGED_ARTIFACTS_TAG, json.dumps([*listed, entry]))
