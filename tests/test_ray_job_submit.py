"""The study's entry point runs under `ray job submit --working-dir <repo>`, the way a
cluster runs it (docs/cluster.md), with both locks on: a private one-node head with Ray token
auth (a new token in a 0600 file, RAY_AUTH_MODE=token + RAY_AUTH_TOKEN_PATH for head and
submitter) and an MLflow basic-auth server (experiments/local_cluster/locks.py) are started for the
test and stopped again. Then: a job of the entry point's --help and the project's imports from
the uploaded working dir; `ray job submit` and the jobs REST API refused without the token or
with a wrong one; the tracking server refusing writes without credentials or with wrong
ones; one tiny study submitted with the right token, logging with the study user's
credentials from the head's environment, to SUCCEEDED; and no secret anywhere it left anything.

Only this test's own Ray processes are stopped (never `ray stop`, which kills every Ray
process on the machine): the head runs in its own session (process group) with its own
--temp-dir, and teardown signals exactly the processes of that group plus any process
whose command line or working directory lies under that temp dir (the job driver runs in
a new session of its own, with its working directory under the temp dir).
"""
from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from experiments.local_cluster.chaos_study import UPLOAD_EXCLUDES
from experiments.local_cluster.locks import (
    bearer, create_mlflow_user, mlflow_auth_config, mlflow_server_env, new_mlflow_login, new_ray_token, write_secret,
)
from experiments.local_cluster.processes import (
    TRACKING_SERVER_ENV, cluster_env, free_ports, own_processes, stop_processes, wait_http,
)

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
    pytest.mark.skipif(importlib.util.find_spec("flask_wtf") is None,
                       reason="MLflow's basic-auth server needs Flask-WTF (pip install -e '.[test]': mlflow[auth])"),
]


def wait_for_job_api(url: str, timeout: float, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/api/version", headers=headers),
                                        timeout=5) as response:
                if response.status == 200:
                    json.loads(response.read())
                    return
        except Exception as err:  # not up yet
            last = err
        time.sleep(1)
    raise TimeoutError(f"the dashboard at {url} did not answer in {timeout:.0f} s: {last}")


class Head:
    """The locked head: Ray token auth on (the token in a 0600 file), an MLflow basic-auth
    server, and the study user's MLflow login in the head's environment (its trials inherit it)."""

    def __init__(self, address: str, gcs_port: int, root: str, env: dict[str, str], token_path: Path,
                 tracking_uri: str, admin, login):
        self.address, self.gcs_port, self.root, self.env = address, gcs_port, root, env
        self.temp_dir = str(Path(root) / "ray")
        self.token_path, self.tracking_uri, self.admin, self.login = token_path, tracking_uri, admin, login
        self.outputs: list[str] = []  # every submitter's stdout + stderr (searched for secrets)

    def submit(self, *entrypoint: str, env: dict[str, str] | None = None, timeout: float = 600,
               options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        command = [
            *ray_cli(), "job", "submit", "--address", self.address, "--log-style", "record", *options,
            "--working-dir", str(REPO),
            "--runtime-env-json", json.dumps({"excludes": UPLOAD_EXCLUDES}),
            "--", *entrypoint,
        ]
        started = time.perf_counter()
        result = subprocess.run(command, env=env or self.env, cwd=str(REPO), capture_output=True, text=True,
                                timeout=timeout)
        result.seconds = time.perf_counter() - started
        self.outputs.append(result.stdout + result.stderr)
        print(f"$ ray job submit ... -- {' '.join(entrypoint)}   ({result.seconds:.1f} s, rc {result.returncode})")
        print(result.stdout[-6000:])
        print(result.stderr[-3000:], file=sys.stderr)
        return result


def start_mlflow(root: Path, env: dict[str, str], port: int):
    """`mlflow server --app-name basic-auth` on `port`, not yet waited for; (process, uri, admin login)."""
    store = root / "mlflow"
    (store / "artifacts").mkdir(parents=True)
    config, admin = mlflow_auth_config(root, store)
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
               "--host", "127.0.0.1", "--port", str(port), "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
               "--artifacts-destination", str(store / "artifacts"), "--workers", "1"]
    with open(store / "server.log", "a") as out:
        process = subprocess.Popen(command, env=env | TRACKING_SERVER_ENV | mlflow_server_env(config, root),
                                   cwd=str(store), start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", admin


def wait_for_mlflow(root: Path, process, uri: str) -> None:
    try:
        wait_http(f"{uri}/health", timeout=240, process=process)
    except (TimeoutError, RuntimeError) as err:
        pytest.fail(f"mlflow server did not start: {err}\n{(root / 'mlflow' / 'server.log').read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ray_head():
    # A short root: Ray's unix sockets live under it (path length limit ~107 bytes).
    root = Path(tempfile.mkdtemp(prefix="rjs_", dir="/tmp"))
    temp_dir = root / "ray"
    temp_dir.mkdir()
    token_path = new_ray_token(root)
    env = cluster_env(token_path)
    # The server and the head start side by side (each spends most of its start waiting); the
    # study user is made on the server once both are up.
    login = new_mlflow_login(root, "study")
    # Every port Ray would otherwise take at a fixed default (6379, 8265, 10001, 52365, ...)
    # is a free one: other Ray runtimes on this machine keep theirs. Drawn in one go with the
    # server's port: the server may still be starting when the head binds its own.
    (mlflow_port, gcs_port, dashboard_port, client_port, agent_http, agent_grpc, env_agent, metrics,
     node_manager, object_manager) = free_ports(10)
    mlflow_process, tracking_uri, admin = start_mlflow(root, env, mlflow_port)
    pgid = None
    try:
        command = [
            *ray_cli(), "start", "--head", "--node-ip-address=127.0.0.1",
            f"--port={gcs_port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            *([f"--ray-client-server-port={client_port}"] if has_ray_client() else []),
            f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
            f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}",
            "--num-cpus=2", '--resources={"trial_driver": 100}', f"--temp-dir={temp_dir}",
            "--disable-usage-stats", "--log-style=record",
        ]
        started = time.perf_counter()
        # Its own session: every daemon it forks shares this process group, ours to signal. The
        # study user's MLflow login is in the node's environment: trials inherit it from the
        # raylet, it never travels in a job's runtime_env (which `ray job list` shows).
        starter = subprocess.Popen(command, env=env | login.env(), cwd=str(temp_dir), start_new_session=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        pgid = starter.pid
        try:
            output, _ = starter.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            starter.kill()
            output, _ = starter.communicate()
            pytest.fail(f"`ray start --head` did not return in 240 s:\n{output[-4000:]}")
        if starter.returncode != 0:
            logs = "".join(f"\n--- {p.name}:\n{p.read_text(errors='replace')[-1500:]}"
                           for p in sorted(temp_dir.glob("session_latest/logs/*.err")) if p.stat().st_size)
            pytest.fail(f"`ray start --head` failed (rc {starter.returncode}):\n{output[-4000:]}{logs}")
        address = f"http://127.0.0.1:{dashboard_port}"
        wait_for_job_api(address, timeout=120, headers=bearer(token_path))
        wait_for_mlflow(root, mlflow_process, tracking_uri)
        create_mlflow_user(tracking_uri, admin, login)
        print(f"head and MLflow up in {time.perf_counter() - started:.1f} s, the head at {address} (root {root}), MLflow {tracking_uri}")
        yield Head(address, gcs_port, str(root), env, token_path, tracking_uri, admin, login)
    finally:
        if pgid is not None:
            stop_processes(pgid, str(temp_dir))
        stop_processes(mlflow_process.pid, None)
        leftover = own_processes(pgid, str(temp_dir)) if pgid else []
        leftover += own_processes(mlflow_process.pid, None)
        shutil.rmtree(root, ignore_errors=True)
        assert not leftover, f"processes of this test survived teardown: {leftover}"


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


# ---------------------------------------------------------------- the locks


def without_token(head: Head) -> dict[str, str]:
    """A client that sends no token (its Ray has auth off, as anyone's out of the box)."""
    env = dict(head.env)
    env.pop("RAY_AUTH_TOKEN_PATH")
    return env | {"RAY_AUTH_MODE": "disabled"}


def with_wrong_token(head: Head) -> dict[str, str]:
    wrong = Path(head.root) / "wrong" / "token"
    if not wrong.exists():
        write_secret(wrong.parent, wrong.name, secrets.token_hex(32))
    return head.env | {"RAY_AUTH_TOKEN_PATH": str(wrong)}


def http(url: str, headers: dict[str, str] | None = None, body: dict | None = None) -> tuple[int, str]:
    """(status, body text) of a GET, or of a JSON POST when `body` is given; errors included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=(headers or {}) | {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def test_ray_job_submit_without_or_with_a_wrong_token_is_refused(ray_head):
    """Observed with Ray 2.60.0 (the CLI's first request, GET /api/version, is refused before
    anything is uploaded; the statuses are the REST test's): no token -> rc 1, `ray.exceptions.
    AuthenticationError: Authentication required: Unauthorized: Missing authentication token`
    (401); a wrong one -> rc 1, `ray.exceptions.AuthenticationError: Authentication failed:
    Forbidden: Invalid authentication token` (403); the job never ran."""
    marker = Path(ray_head.root) / "intruder_ran"
    refused = {}
    for name, env in (("no token", without_token(ray_head)), ("wrong token", with_wrong_token(ray_head))):
        result = ray_head.submit("touch", str(marker), env=env, timeout=180)
        refused[name] = result.stdout + result.stderr
        assert result.returncode != 0, refused[name][-3000:]
    assert ("AuthenticationError: Authentication required: Unauthorized: Missing authentication token"
            in refused["no token"]), refused["no token"][-3000:]
    assert ("AuthenticationError: Authentication failed: Forbidden: Invalid authentication token"
            in refused["wrong token"]), refused["wrong token"][-3000:]
    assert not marker.exists()
    status, jobs = http(f"{ray_head.address}/api/jobs/", bearer(ray_head.token_path))
    assert status == 200 and str(marker) not in jobs


def test_the_jobs_rest_api_without_or_with_a_wrong_token_is_refused(ray_head):
    """Observed with Ray 2.60.0, GET and POST /api/jobs/: no Authorization header -> 401
    "Unauthorized: Missing authentication token"; `Authorization: Bearer <wrong>` -> 403
    "Forbidden: Invalid authentication token"; the right one -> 200, and no job was made."""
    url = f"{ray_head.address}/api/jobs/"
    marker = Path(ray_head.root) / "rest_intruder_ran"
    wrong = {"Authorization": f"Bearer {secrets.token_hex(32)}"}
    job = {"entrypoint": f"touch {marker}"}
    seen = {(method, name): http(url, headers, job if method == "POST" else None)
            for method in ("GET", "POST") for name, headers in (("none", None), ("wrong", wrong))}
    print(seen)
    for method in ("GET", "POST"):
        assert seen[method, "none"] == (401, "Unauthorized: Missing authentication token"), seen
        assert seen[method, "wrong"] == (403, "Forbidden: Invalid authentication token"), seen
    status, jobs = http(url, bearer(ray_head.token_path))
    assert status == 200 and str(marker) not in jobs
    assert not marker.exists()


def mlflow_client(head: Head, login, monkeypatch):
    """An MlflowClient of `login` (MLflow reads credentials from the environment only)."""
    from mlflow.tracking import MlflowClient

    for name, value in login.env().items():
        monkeypatch.setenv(name, value)
    return MlflowClient(tracking_uri=head.tracking_uri)


def test_the_tracking_server_refuses_writes_without_or_with_wrong_credentials(ray_head, monkeypatch):
    """Observed with MLflow 3.17.2's basic-auth app: creating an experiment or a run with no
    credentials or a wrong password -> 401 (body: "You are not authenticated. Please see
    https://www.mlflow.org/docs/latest/auth/index.html#authenticating-to-mlflow on how to
    authenticate."); nothing was written (no such experiment, no run in the default one)."""
    api = f"{ray_head.tracking_uri}/api/2.0/mlflow"
    wrong_pair = base64.b64encode(f"{ray_head.login.username}:{secrets.token_urlsafe(24)}".encode()).decode()
    seen = {}
    for name, headers in (("none", None), ("wrong", {"Authorization": f"Basic {wrong_pair}"})):
        seen[name, "experiment"] = http(f"{api}/experiments/create", headers, {"name": f"intruder-{name}"})
        seen[name, "run"] = http(f"{api}/runs/create", headers, {"experiment_id": "0"})
    print(seen)
    for key, (status, text) in seen.items():
        assert status == 401, (key, status, text)
        assert "You are not authenticated" in text, (key, text)
    client = mlflow_client(ray_head, ray_head.admin, monkeypatch)
    names = [e.name for e in client.search_experiments()]
    assert not [n for n in names if n.startswith("intruder")], names
    assert client.search_runs(["0"]) == []
    # The right credentials pass the same door.
    assert http(f"{api}/experiments/search", ray_head.login.header(), {"max_results": 10})[0] == 200


# ---------------------------------------------------------------- the locked study


@pytest.fixture(scope="module")
def locked_study(ray_head, tiny_semeval_dir, tiny_model_dir):
    """One tiny study (prompt_ki, K=2, seeds 1-2, 2 search trials, 1 epoch) submitted with the
    right token, logging to the basic-auth server with the credentials of the head's environment."""
    study_dir = Path(ray_head.root) / "study"
    args = ["--data-dir", str(tiny_semeval_dir), "--model", str(tiny_model_dir), "--variants", "prompt_ki",
            "--ks", "2", "--seeds", "1", "2", "--num-samples", "2", "--epochs", "1", "--study-dir", str(study_dir),
            "--tracking-uri", ray_head.tracking_uri, "--storage-path", str(Path(ray_head.root) / "storage"),
            "--set", "search.asha=false", "--set", "train.num_threads=1", "--set", "resources.cpus_per_worker=1",
            "--set", "resources.checkpoint_every_s=0"]
    submission = f"cloce_locked_{int(time.time())}"
    result = ray_head.submit(sys.executable, "study/run_fewshot_grid.py", *args, timeout=1200,
                             options=("--submission-id", submission))
    return result, submission, study_dir


def study_runs(client):
    experiment = client.get_experiment_by_name("cloce-quick")
    assert experiment is not None, [e.name for e in client.search_experiments()]
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return ([r for r in runs if "mlflow.parentRunId" not in r.data.tags],
            [r for r in runs if "mlflow.parentRunId" in r.data.tags])


@pytest.mark.usefixtures("locked_study")
def test_the_locked_study_succeeds_and_logs_everything(ray_head, locked_study, monkeypatch):
    result, submission, study_dir = locked_study
    output = result.stdout + result.stderr
    assert result.returncode == 0 and re.search(rf"Job '{submission}' succeeded", output), output[-4000:]
    status = json.loads(http(f"{ray_head.address}/api/jobs/{submission}", bearer(ray_head.token_path))[1])
    assert status["status"] == "SUCCEEDED", status
    client = mlflow_client(ray_head, ray_head.login, monkeypatch)
    parents, children = study_runs(client)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = sorted(r.data.tags["cloce.trial_key"] for r in children)
    assert len(keys) == 3 and len(set(keys)) == 3, keys  # 2 search trials + seed 2's final
    assert all(r.info.status == "FINISHED" for r in children)
    # (run.info.user_id is the client's local user name, not the basic-auth login: seen as
    # "unknown" here, so it cannot say who wrote a run; that the writes went through with the
    # study user's login, and fail without one, is what the checks here and above show.)
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id, "results")]
    for name in ("fewshot_table.md", "fewshot_table.csv", "learning_curves.png", "f1_vs_k.png"):
        assert f"results/{name}" in artifacts, artifacts
    assert (study_dir / "tables" / "fewshot_table.md").is_file()


def every_artifact(client, run_id: str, into: Path, path: str | None = None) -> list[Path]:
    files = []
    for item in client.list_artifacts(run_id, path):
        if item.is_dir:
            files += every_artifact(client, run_id, into, item.path)
        else:
            files.append(Path(client.download_artifacts(run_id, item.path, str(into))))
    return files


def test_no_secret_is_anywhere_the_study_left_something(ray_head, locked_study, monkeypatch, tmp_path):
    """After the locked study, the Ray token, the study user's and the admin's MLflow passwords
    and their basic-auth headers (base64 of user:password) are searched in: every MLflow
    experiment's runs (params, tags, metric names) and every artifact (downloaded); the Ray job's
    metadata (GET /api/jobs/ and /api/jobs/<id> JSON: entrypoint, runtime_env, metadata, what
    `ray job list` and `ray job status` show), the job's logs (/api/jobs/<id>/logs, what
    `ray job logs` shows); every file under the test's root except the secrets themselves (the head's temp dir with every Ray log and session file, the study
    dir, the Ray storage path, the MLflow store and its artifacts); and every submitter's output
    (the driver's output included). Found nowhere."""
    result, submission, _ = locked_study
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    logins = (ray_head.login, ray_head.admin)
    wanted = {"ray token": ray_head.token_path.read_text().strip()}
    for login in logins:
        wanted[f"{login.username} password"] = login.password
        wanted[f"{login.username} basic-auth"] = login.header()["Authorization"].split()[1]
    found: list[str] = []

    def search(where: str, blob: bytes | str) -> None:
        data = blob.encode() if isinstance(blob, str) else blob
        found.extend(f"{what} in {where}" for what, secret in wanted.items() if secret.encode() in data)

    client = mlflow_client(ray_head, ray_head.admin, monkeypatch)
    searched_runs = searched_artifacts = 0
    for experiment in client.search_experiments():
        search(f"experiment {experiment.name}", str(experiment))
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            searched_runs += 1
            search(f"run {run.info.run_id}", json.dumps([run.data.params, run.data.tags, sorted(run.data.metrics)]))
            for file in every_artifact(client, run.info.run_id, tmp_path / run.info.run_id):
                searched_artifacts += 1
                search(f"artifact {file}", file.read_bytes())
    headers = bearer(ray_head.token_path)
    search("GET /api/jobs/", http(f"{ray_head.address}/api/jobs/", headers)[1])
    # What `ray job list`, `ray job status` and `ray job logs` print, from the endpoints they
    # read (a CLI call each would cost a Python start with Ray imported, ~4 CPU s).
    for endpoint in (f"/api/jobs/{submission}", f"/api/jobs/{submission}/logs"):
        status, body = http(f"{ray_head.address}{endpoint}", headers)
        assert status == 200, (endpoint, status, body[-500:])
        search(f"GET {endpoint}", body)
    searched_files = 0
    secret_dirs = (Path(ray_head.root) / "secrets", Path(ray_head.root) / "wrong")
    for path in Path(ray_head.root).rglob("*"):
        if path.is_file() and not path.is_symlink() and not any(d in path.parents for d in secret_dirs):
            searched_files += 1
            search(str(path), path.read_bytes())
    for index, output in enumerate(ray_head.outputs):
        search(f"submitter output {index}", output)
    print(f"searched {searched_runs} runs, {searched_artifacts} artifacts, {searched_files} files, "
          f"{len(ray_head.outputs)} submitter outputs for {sorted(wanted)}")
    assert searched_runs >= 4 and searched_artifacts >= 4 and searched_files
    assert found == [], found
