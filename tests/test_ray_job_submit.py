"""The study's entry point runs under `ray job submit --working-dir <repo>`, the way a
cluster runs it (docs/cluster.md): a private one-node head is started for the test and
stopped again, then one tiny job is submitted through the dashboard's job API: the entry
point's --help as a script, then the project's imports from the uploaded working dir.

Only this test's own Ray processes are stopped (never `ray stop`, which kills every Ray
process on the machine): the head runs in its own session (process group) with its own
--temp-dir, and teardown signals exactly the processes of that group plus any process
whose command line or working directory lies under that temp dir (the job driver runs in
a new session of its own, with its working directory under the temp dir).
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from experiments.local_cluster.chaos_study import UPLOAD_EXCLUDES
from experiments.local_cluster.processes import free_ports, own_processes, stop_processes

REPO = Path(__file__).resolve().parents[1]

MAX_UPLOAD_MIB = 20.0


def ray_cli() -> list[str] | None:
    """The `ray` CLI of this interpreter (the console script is ray.scripts.scripts:main):
    head, submitter and job all use the same Python, whatever `ray` is first on PATH."""
    if importlib.util.find_spec("ray") is None:
        return None
    return [sys.executable, "-m", "ray.scripts.scripts"]


def missing_job_server() -> str | None:
    """Why this Ray cannot serve `ray job submit` (the job API lives in the dashboard)."""
    try:
        importlib.import_module("ray.dashboard.optional_deps")
    except ImportError as err:
        return (f"Ray's job server (the dashboard) needs ray[default], not installed here ({err}); "
                "pip install 'ray[default]' at the pinned version")
    return None


def has_ray_client() -> bool:
    """With ray[client] (grpc), `ray start` also opens the Ray Client server (port 10001)."""
    return importlib.util.find_spec("grpc") is not None


pytestmark = [
    pytest.mark.slow,  # a Ray head started and stopped
    pytest.mark.skipif(ray_cli() is None, reason="the `ray` CLI is not installed (pip install 'ray[default]')"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                       reason="needs /proc (Linux) to find and stop only this test's Ray processes"),
    pytest.mark.skipif(ray_cli() is not None and missing_job_server() is not None,
                       reason=str(missing_job_server() if ray_cli() is not None else "")),
]


def ray_env() -> dict[str, str]:
    """Same environment for head and submitter: no token auth, no cluster from outside."""
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    # Ray 2.60 turns token auth on by default when ~/.ray/auth_token exists; a private
    # loopback-only head needs none, and head and submitter must agree on the mode.
    env["RAY_AUTH_MODE"] = "disabled"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    # Ray's own processes find this interpreter's tools first; the job names sys.executable itself.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def wait_for_job_api(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=5) as response:
                if response.status == 200:
                    json.loads(response.read())
                    return
        except Exception as err:  # not up yet
            last = err
        time.sleep(1)
    raise TimeoutError(f"the dashboard at {url} did not answer in {timeout:.0f} s: {last}")


class Head:
    def __init__(self, address: str, gcs_port: int, temp_dir: str, env: dict[str, str]):
        self.address, self.gcs_port, self.temp_dir, self.env = address, gcs_port, temp_dir, env

    def submit(self, *entrypoint: str, timeout: float = 300) -> subprocess.CompletedProcess:
        command = [
            *ray_cli(), "job", "submit", "--address", self.address, "--log-style", "record",
            "--working-dir", str(REPO),
            "--runtime-env-json", json.dumps({"excludes": UPLOAD_EXCLUDES}),
            "--", *entrypoint,
        ]
        started = time.perf_counter()
        result = subprocess.run(command, env=self.env, cwd=str(REPO), capture_output=True, text=True,
                                timeout=timeout)
        result.seconds = time.perf_counter() - started
        print(f"$ ray job submit ... -- {' '.join(entrypoint)}   ({result.seconds:.1f} s, rc {result.returncode})")
        print(result.stdout[-6000:])
        print(result.stderr[-3000:], file=sys.stderr)
        return result


@pytest.fixture(scope="module")
def ray_head():
    # A short temp dir: Ray's unix sockets live under it (path length limit ~107 bytes).
    temp_dir = tempfile.mkdtemp(prefix="rjs_", dir="/tmp")
    # Every port Ray would otherwise take at a fixed default (6379, 8265, 10001, 52365, ...)
    # is a free one: other Ray runtimes on this machine keep theirs.
    (gcs_port, dashboard_port, client_port, agent_http, agent_grpc, env_agent, metrics,
     node_manager, object_manager) = free_ports(9)
    env = ray_env()
    command = [
        *ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        *([f"--ray-client-server-port={client_port}"] if has_ray_client() else []),
        f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
        f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
        "--num-cpus=1", f"--temp-dir={temp_dir}", "--disable-usage-stats", "--log-style=record",
    ]
    started = time.perf_counter()
    # Its own session: every daemon it forks shares this process group, ours to signal.
    starter = subprocess.Popen(command, env=env, cwd=temp_dir, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pgid = starter.pid
    try:
        try:
            output, _ = starter.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            starter.kill()
            output, _ = starter.communicate()
            pytest.fail(f"`ray start --head` did not return in 240 s:\n{output[-4000:]}")
        if starter.returncode != 0:
            pytest.fail(f"`ray start --head` failed (rc {starter.returncode}):\n{output[-4000:]}")
        address = f"http://127.0.0.1:{dashboard_port}"
        wait_for_job_api(address, timeout=120)
        print(f"head up in {time.perf_counter() - started:.1f} s at {address} (temp dir {temp_dir})")
        yield Head(address, gcs_port, temp_dir, env)
    finally:
        stop_processes(pgid, temp_dir)
        leftover = own_processes(pgid, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not leftover, f"Ray processes of this test survived teardown: {leftover}"


def test_the_study_runs_as_a_ray_job_from_the_uploaded_working_dir(ray_head):
    """One job (a head is slow to start, a job slow to submit): the entry point runs as a
    script (`--help`), then the project imports from the copy Ray unpacked on the node."""
    code = ("import sys, cloce, study.driver.study_run; print('imports ok'); print('cloce from', cloce.__file__); "
            "print('python', sys.executable); from study.cli import build_parser; "
            "print('study address', build_parser().parse_args([]).address)")
    python = shlex.quote(sys.executable)
    # `ray job submit` quotes each word of the entry point: the shell's `&&` needs its own sh -c.
    result = ray_head.submit("sh", "-c", f"{python} study/run_fewshot_grid.py --help && {python} -c {shlex.quote(code)}")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert re.search(r"Job '[^']+' succeeded", output), output[-2000:]

    assert re.search(r"^usage: run_fewshot_grid.py", output, re.MULTILINE), output[-2000:]
    for flag in ("--experiment", "--address", "--tracking-uri", "--storage-path", "--resume"):
        assert flag in output, f"{flag} missing from the job's --help output"

    assert re.search(r"^imports ok$", output, re.MULTILINE), output[-2000:]  # not the echoed command
    # The job ran this interpreter, not whatever `python` comes first on the node's PATH.
    assert re.search(rf"^python {re.escape(sys.executable)}$", output, re.MULTILINE), output[-2000:]
    match = re.search(r"cloce from (\S+)", output)
    assert match, output[-2000:]
    # The job imports the copy Ray unpacked on the node, not this checkout or site-packages.
    assert match.group(1).startswith(ray_head.temp_dir), match.group(1)
    # Inside a job Ray sets RAY_ADDRESS to the cluster: the study joins it (no private runtime).
    address = re.search(r"study address (\S+)", output)
    assert address and address.group(1).endswith(f":{ray_head.gcs_port}"), output[-2000:]
    # ... and that copy is the code alone: the excludes kept local results and .git at home.
    package = Path(match.group(1)).parents[1]
    assert (package / "study" / "run_fewshot_grid.py").is_file()
    assert (package / "experiments").is_dir()
    for left_out in (".git", "runs", "mlflow.db", "outputs"):
        assert not (package / left_out).exists(), f"{left_out} was uploaded with the working dir"
    size_mib = sum(f.stat().st_size for f in package.rglob("*") if f.is_file()) / 2**20
    print(f"uploaded working dir: {size_mib:.2f} MiB")
    assert size_mib < MAX_UPLOAD_MIB, f"the working dir upload is {size_mib:.1f} MiB"
