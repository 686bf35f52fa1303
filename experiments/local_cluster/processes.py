"""Processes and ports of the local cluster (experiments/local_cluster/cluster.py), by process id only: free
ports, the one environment every node and client shares, the processes a process group (or a
directory) owns and stopping them, and waiting for a server to answer over HTTP. Never
`ray stop` (it kills every Ray process on the machine).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# One way to draw ports for every Ray node, here and on SLURM: below the ephemeral range, so
# that nothing binding port 0 meanwhile takes them (that module says why).
from deploy.slurm.free_ports import free_ports  # noqa: F401 (the cluster's and the tests' import)


# ---------------------------------------------------------------- processes, by id only


def ray_cli() -> list[str]:
    """The `ray` CLI of this interpreter, whatever `ray` is first on PATH."""
    return [sys.executable, "-m", "ray.scripts.scripts"]


def cluster_env(token_path: str | Path) -> dict[str, str]:
    """One environment for every node, the submitter and the checks: Ray token auth on, with the
    token read from the 0600 file `token_path` (its path only: the value never lands on a
    command line or in an environment Ray logs), no cluster from outside, one thread per op."""
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
                 "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # The job's `python` is this interpreter (the one with ray and the project installed).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


# An MLflow 3 server also starts its job runner: eight more Python processes (huey consumers
# for GenAI evaluation jobs, which a study never submits), ~25 CPU seconds at each start and
# polling after. A tracking server for studies runs without them.
TRACKING_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


def names_directory(cmdline: str, directory: str) -> bool:
    """Whether a command line names `directory` or a path under it (".../worker-1" is not
    ".../worker-10")."""
    return re.search(re.escape(directory) + r"(?=[/\s\"',:;]|$)", cmdline) is not None


def own_processes(pgid: int, marker: str | None) -> list[int]:
    """Live processes of process group `pgid`, or running from / under the directory `marker`,
    and their descendants; zombies count as gone."""
    stats, mine = {}, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            continue
        stats[pid] = stat
        if stat[2] == pgid:
            mine.add(pid)
            continue
        if not marker:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if names_directory(cmdline, marker) or cwd == marker or cwd.startswith(marker + "/"):
            mine.add(pid)
    grew = True
    while grew:  # descendants (e.g. workers that left the group)
        extra = {pid for pid, stat in stats.items() if stat[1] in mine} - mine
        mine |= extra
        grew = bool(extra)
    mine.discard(os.getpid())
    return sorted(mine)


def stop_processes(pgid: int, marker: str | None, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL what is left; returns the survivors (should be none)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        for pid in own_processes(pgid, marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while own_processes(pgid, marker) and time.monotonic() < deadline:
            time.sleep(0.3)
        if not own_processes(pgid, marker):
            return []
    return own_processes(pgid, marker)


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None,
              headers: dict[str, str] | None = None) -> None:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with rc {process.returncode}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
                if response.status == 200:
                    return
        except Exception as err:  # not up yet
            last = err
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s: {last}")
