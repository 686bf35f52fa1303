"""The retry policy for a remote MLflow tracking server (http/https).

A tracking server that is down (restarted, overloaded) is waited for: every call wrapped in
`retrying` retries with exponential backoff (1, 2, 4 ... 15 s) for up to
`CLOCE_TRACKING_RETRY_S` (default 300 s), then raises `TrackingUnavailable`. A local store
(sqlite:, file:) is not retried.
"""
from __future__ import annotations

import functools
import os
import random
import sys
import time

RETRY_ENV = "CLOCE_TRACKING_RETRY_S"
DEFAULT_RETRY_S = 300.0
MAX_BACKOFF_S = 15.0
# MLflow's own HTTP retries back off up to 120 s between tries (7 tries, ~4 min): a client
# would keep sleeping long after a restarted server is back. Ours are capped at 15 s.
_MLFLOW_HTTP_RETRY_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                          "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
# MLflow error codes of a server that is down, restarting or overloaded (a connection refused
# arrives as INTERNAL_ERROR "API request to ... failed with exception ...").
_TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}


class TrackingUnavailable(RuntimeError):
    """The tracking server did not answer within the retry budget."""


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def is_transient(err: BaseException) -> bool:
    """A server that is down or restarting, not a request MLflow refuses (bad value, no such run)."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover
        MlflowException = ()  # noqa: N806
    if isinstance(err, MlflowException):
        return err.error_code in _TRANSIENT_CODES
    import requests

    return isinstance(err, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                            TimeoutError))


def retry_budget_s() -> float:
    try:
        return float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_S))
    except ValueError:
        return DEFAULT_RETRY_S


def retrying(function):
    """Retry an MLflow call (first argument: the tracking URI) with exponential backoff while a
    remote tracking server is unreachable. A local store (sqlite:, file:) fails at once, as before."""

    @functools.wraps(function)
    def wrapper(uri, *args, **kwargs):
        if not is_remote(str(uri)):
            return function(uri, *args, **kwargs)
        deadline = time.monotonic() + retry_budget_s()
        delay, tries, name = 1.0, 0, getattr(function, "__name__", "MLflow call")
        while True:
            tries += 1
            try:
                result = function(uri, *args, **kwargs)
            except Exception as err:
                if not is_transient(err):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TrackingUnavailable(
                        f"MLflow tracking server {uri} unreachable for {retry_budget_s():.0f} s "
                        f"({tries} tries of {name}): {str(err).splitlines()[0][:300]}") from err
                if tries == 1:
                    print(f"[tracking] {name}: {uri} unreachable ({str(err).splitlines()[0][:200]}); "
                          f"retrying for up to {retry_budget_s():.0f} s", file=sys.stderr, flush=True)
                time.sleep(min(delay * (0.5 + random.random()), left))
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            if tries > 1:
                print(f"[tracking] {name}: {uri} answered again after {tries} tries",
                      file=sys.stderr, flush=True)
            return result

    return wrapper
