"""Links to a study in the MLflow UI: the command that starts a UI on a store, and the URLs of
a run and of an experiment's runs table in its machine-learning view. Pure: nothing is contacted."""
from __future__ import annotations

from study.tracking.retry import is_remote

# MLflow 3's UI opens an experiment on its GenAI overview (traces, tokens: empty here); this
# query parameter opens its machine-learning view (runs, metrics, artifacts) instead. Read from
# the route's search params by the UI's workflow-type context (MLflow 3.x `workflowType`).
UI_VIEW_QUERY = "workflowType=machine_learning"
UI_HOST, UI_PORT = "127.0.0.1", 5000


def ui_path(experiment_id: str, run_id: str | None = None) -> str:
    """The UI route (after the server's base URL) of a run, or of the experiment's runs table,
    in the machine-learning view."""
    run = f"/{run_id}" if run_id else ""
    return f"#/experiments/{experiment_id}/runs{run}?{UI_VIEW_QUERY}"


def _without_password(uri: str) -> str:
    """A store URI with any password replaced by *** (a command line is printed and logged)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def ui_link(uri: str, experiment_id: str, run_id: str | None = None,
            port: int = UI_PORT) -> tuple[str | None, str | None]:
    """Where to see a run (or, without run_id, the experiment's runs) in the MLflow UI:
    (command that starts a UI on the store, or None when the tracking URI is a server; URL).

    http(s) tracking URI: the URL on that server (user and password left out). A store without
    a server (sqlite:, file:, a path, a database URI): `mlflow ui` on it, on 127.0.0.1:port, and
    the URL there (a password in the URI printed as ***). Databricks: (None, None).
    Pure: nothing is contacted."""
    from urllib.parse import urlsplit, urlunsplit
    import shlex

    if uri.startswith("databricks"):
        return None, None
    if is_remote(uri):
        parts = urlsplit(uri)
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        return None, f"{base}/{ui_path(experiment_id, run_id)}"
    command = (f"mlflow ui --backend-store-uri {shlex.quote(_without_password(uri))} "
               f"--host {UI_HOST} --port {port}")
    return command, f"http://{UI_HOST}:{port}/{ui_path(experiment_id, run_id)}"


def ui_hint(uri: str, experiment_id: str, run_id: str) -> str:
    """The lines a study ends with: how to open its parent run and its runs table in the UI."""
    command, run_url = ui_link(uri, experiment_id, run_id)
    if run_url is None:
        return f"MLflow: experiment {experiment_id}, parent run {run_id} ({uri})"
    _, runs_url = ui_link(uri, experiment_id)
    lines = ["MLflow UI (machine-learning view):"]
    if command:
        lines.append(f"  start it:   {command}")
    lines += [f"  parent run: {run_url}", f"  all runs:   {runs_url}"]
    return "\n".join(lines)
