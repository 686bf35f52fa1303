"""The SLURM recipe (deploy/slurm/cloce_study.sbatch) on a real SLURM started on this machine
(tests/slurm_cluster.py: munged, slurmctld and two slurmd on free ports, stopped by process id),
one cluster for the module and three jobs in all, each behaviour checked once:
- a job on two nodes starts a Ray head with token auth inside an `srun` step and a worker step on
  the other node; the two cells' trials (local mode, one CPU per node) run on different nodes; it is cancelled
  mid-study (`scancel`) and its Ray on both nodes goes with it;
- a `--resume` job on one node finishes that study without running a trial twice, ends COMPLETED
  in `sacct`, its MLflow runs and table in place; no secret of either job written anywhere, no
  process of them left;
- a third job (one node) hears of its time limit (`--signal=B:USR1@60`) and stops its study and
  Ray before it.
(Before, a separate one-node job ran to COMPLETED and a second cluster ran the two-node job: five
jobs and two clusters, 693 s; the checks are the same.)
"""
from __future__ import annotations

import contextlib
import csv
import io
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.slurm_cluster import SlurmCluster, command_line, missing_slurm, new_root, process_environ
from tests.test_study_e2e import child_runs

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "deploy" / "slurm" / "cloce_study.sbatch"

pytestmark = [
    pytest.mark.slow,  # a SLURM cluster, a Ray head and whole studies
    pytest.mark.skipif(missing_slurm() is not None, reason=str(missing_slurm())),
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux) to find the jobs' processes"),
]


@contextlib.contextmanager
def running_cluster(**shape):
    """A SLURM of its own, up for the `with` block; afterwards nothing of it may be left."""
    root = new_root()
    cluster = SlurmCluster(root, kill_wait_s=20, **shape)
    try:
        started = time.perf_counter()
        cluster.start()
        print(f"SLURM ({len(cluster.nodes)} node(s)) up in {time.perf_counter() - started:.1f} s under {root}")
        yield cluster
    finally:
        stragglers = cluster.stop()
        left = cluster.leftovers()
        shutil.rmtree(root, ignore_errors=True)
        assert not stragglers, f"processes of the test SLURM had to be killed: {stragglers}"
        assert not left, f"processes of the test SLURM survived: {left}"


@pytest.fixture(scope="module")
def slurm():
    """Two nodes of 2 CPUs: a job asks for one node, or two with 1 CPU each."""
    with running_cluster(nodes=2, cpus=2) as cluster:
        yield cluster


def job_processes(cluster: SlurmCluster, job_id: str) -> dict[int, str]:
    """The job's processes (Ray's among them): they carry the job's id in their environment."""
    mark = f"SLURM_JOB_ID={job_id}".encode()
    return {pid: cmd for pid, cmd in cluster.leftovers().items() if mark in process_environ(pid).split(b"\0")}


def environment(pid: int) -> dict[str, str]:
    pairs = (item.decode(errors="replace").partition("=") for item in process_environ(pid).split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def ray_processes(processes: dict[int, str]) -> dict[int, str]:
    return {pid: cmd for pid, cmd in processes.items() if "ray" in cmd.lower()}


def runs(program: str, cmd: str) -> bool:
    """Whether a command line runs `program` itself (a Ray worker still starting names the
    raylet among its arguments, `--raylet-name=...`, and is no raylet)."""
    return Path(cmd.split(maxsplit=1)[0]).name == program if cmd.strip() else False


def study_args(data_dir, model_dir, shared: Path, variants: list[str]) -> list[str]:
    return [
        "--data-dir", str(data_dir), "--model", str(model_dir), "--variants", *variants, "--ks", "2",
        "--seeds", "1", "2", "--num-samples", "2", "--epochs", "1",
        "--study-dir", str(shared / "study"), "--tracking-uri", f"sqlite:///{shared / 'mlflow.db'}",
        "--storage-path", str(shared / "ray"),
        "--set", "search.asha=false", "--set", "train.num_threads=1", "--set", "resources.checkpoint_every_s=0",
    ]


def submit(cluster: SlurmCluster, shared: Path, args: list[str], *options: str) -> tuple[str, Path]:
    env = cluster.env() | {
        "CLOCE_REPO": str(REPO), "CLOCE_PYTHON": sys.executable, "CLOCE_SHARED_DIR": str(shared / "slurm"),
        "CLOCE_RAY_TMP": str(cluster.root / "ray"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    (cluster.root / "ray").mkdir(exist_ok=True)
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    output = shared / "job-%j.out"
    job_id = cluster.sbatch("--cpus-per-task=2", "--time=30", f"--output={output}", *options, str(RECIPE), *args,
                            env=env, cwd=REPO)
    return job_id, shared / f"job-{job_id}.out"


def wait_for(condition, what: str, timeout: float, cluster: SlurmCluster, job_id: str, output: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if cluster.job_state(job_id) is None:
            break
        time.sleep(1)
    tail = output.read_text(errors="replace")[-4000:] if output.exists() else "(no output)"
    pytest.fail(f"{what}: not seen (job {job_id} {cluster.job_state(job_id)})\n{tail}")


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def files_containing(root: Path, secret: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink() and secret in p.read_bytes()]


def check_token_auth_while_running(cluster: SlurmCluster, job_id: str, output: Path, job_dir: Path, nodes: int) -> bytes:
    """A token only its owner may read, a head that refuses requests without it, and every
    raylet importing this checkout with token auth on; returns the token."""
    token_file = job_dir / "ray_auth_token"
    wait_for(lambda: token_file.is_file() and token_file.stat().st_size, "the token file", 120, cluster, job_id, output)
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert job_dir.stat().st_mode & 0o777 == 0o700
    token = token_file.read_bytes()
    assert len(token) == 64
    head = wait_for(lambda: (job_dir / "head").is_file() and (job_dir / "head").read_text().split(),
                    "the head's address", 180, cluster, job_id, output)
    url = f"http://127.0.0.1:{head[2]}/api/jobs/"
    up = "1 Ray node up" if nodes == 1 else f"{nodes} Ray nodes up"
    wait_for(lambda: up in text(output), "the Ray nodes", 300, cluster, job_id, output)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    assert refused.value.code in (401, 403), refused.value
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {token.decode()}"}),
                                timeout=10) as answer:
        assert answer.status == 200
    running = ray_processes(job_processes(cluster, job_id))
    raylets = [pid for pid, cmd in running.items() if runs("raylet", cmd)]
    assert len(raylets) == nodes, running
    for raylet in raylets:  # Ray's own processes, like everything the job runs, import this checkout
        assert environment(raylet).get("PYTHONPATH", "").split(":")[0] == str(REPO)
        assert environment(raylet)["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" not in environment(raylet)
    return token


def test_a_study_cancelled_on_two_nodes_resumes_on_one_and_completes(slurm, tiny_semeval_dir, tiny_model_dir,
                                                                     tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    args = study_args(tiny_semeval_dir, tiny_model_dir, shared, ["prompt_ki", "finetune"])
    # Two nodes, 1 CPU each, and trials in Ray Train's local mode (quick.toml: each trial trains
    # in its own 1-CPU Tune process): two trials can only run at once on different nodes. (Ray
    # Train workers on the nodes of a cluster, and a node lost under them, are
    # tests/test_local_cluster.py's: with a worker each, a trial here started five processes,
    # its Train controller, worker, sync actor, report queue and placement-group cleaner.)
    job_id, output = submit(slurm, shared, args, "--nodes=2", "--cpus-per-task=1")
    job_dir = shared / "slurm" / f"job-{job_id}"
    tokens = [check_token_auth_while_running(slurm, job_id, output, job_dir, nodes=2)]
    assert f"nodes {' '.join(slurm.nodes)}, head {slurm.nodes[0]}" in text(output)
    # (srun names the log after the host, here the same machine for both nodes)
    # (the node counts as joined a moment before srun's copy of its output reaches the log)
    worker_logs = wait_for(lambda: [log for log in job_dir.glob("ray-worker-*.log") if "Ray runtime started" in text(log)],
                           "the worker's 'Ray runtime started'", 60, slurm, job_id, output)
    assert len(list(job_dir.glob("ray-worker-*.log"))) == len(worker_logs) == 1, worker_logs

    # Mid-study: one cell finished (its ledger written), the other still training, and a trial
    # started on each node (in local mode a cell's trials share one process, so one node: the
    # second cell's first trial may start there well after the first cell's).
    cells = shared / "study" / "cells"

    def mid_study():
        finished = sorted(cells.glob("*.json")) if cells.is_dir() else []
        if not finished:
            return None
        try:
            tagged = {r.data.tags.get("node") for r in child_runs(shared / "mlflow.db")[2]}
        except Exception:  # the store busy with a write: ask again
            return None
        return finished if set(slurm.nodes) <= tagged else None

    finished = wait_for(mid_study, "a finished cell and a trial on each node", 1200, slurm, job_id, output)
    first_cell = finished[0].stem.split("-")[0]
    running = ray_processes(job_processes(slurm, job_id))
    assert sum(runs("raylet", cmd) for cmd in running.values()) == 2, running
    assert any(runs("gcs_server", cmd) for cmd in running.values()), running
    slurm.run("scancel", job_id)
    cancelled_at = time.monotonic()
    assert slurm.wait_ended(job_id, timeout=120) == "CANCELLED"
    # SIGTERM reaches the batch script and the Ray steps at once; SLURM's SIGKILL follows
    # KillWait (20 s) later, but Ray should be gone before that.
    while job_processes(slurm, job_id) and time.monotonic() - cancelled_at < 90:
        time.sleep(1)
    gone_after = time.monotonic() - cancelled_at
    print(f"job {job_id} cancelled after cell {first_cell}; its processes gone {gone_after:.0f} s later\n"
          f"{slurm.sacct(job_id)}")
    assert not job_processes(slurm, job_id), job_processes(slurm, job_id)
    assert not [pid for pid in running if Path(f"/proc/{pid}").exists() and command_line(pid) == running[pid]]
    print(output.read_text(errors="replace")[-2000:])
    _, _, before = child_runs(shared / "mlflow.db")
    kept = {r.data.tags["cloce.trial_key"]: r.info.run_id for r in before
            if f"/{first_cell}/" in r.data.tags["cloce.trial_key"]}
    assert len(kept) == 3, kept
    # The cells run at once (study/driver/pool.py), two trials at a time: one on each node.
    # (a trial cut off as it started may not have tagged its node yet)
    nodes = {r.data.tags["cloce.trial_key"]: r.data.tags["node"] for r in before if "node" in r.data.tags}
    print(f"trials per node: {nodes}")
    assert set(nodes.values()) == set(slurm.nodes), nodes

    # The same study resumed by a new job on one node (2 CPUs), to the end.
    started = time.perf_counter()
    resumed_id, resumed_output = submit(slurm, shared, [*args, "--resume"], "--nodes=1")
    resumed_dir = shared / "slurm" / f"job-{resumed_id}"
    tokens.append(check_token_auth_while_running(slurm, resumed_id, resumed_output, resumed_dir, nodes=1))
    state = slurm.wait_ended(resumed_id, timeout=1500)
    log = resumed_output.read_text(errors="replace")
    print(f"job {resumed_id} ended in {time.perf_counter() - started:.0f} s\n{slurm.sacct(resumed_id)}\n{log[-3000:]}")
    assert state == "COMPLETED", log[-6000:]
    assert f"study cloce-slurm-{resumed_id} SUCCEEDED" in log
    assert f"[resume] {first_cell} K=2: already finished, not re-run" in log
    assert "| prompt_ki |" in log and "| finetune |" in log  # the study's table, printed by its driver

    # Its MLflow runs and table.
    client, parents, children = child_runs(shared / "mlflow.db")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = sorted(r.data.tags["cloce.trial_key"] for r in children)
    # A cancel that lands while Tune writes the unfinished cell's state can leave it torn (as a
    # killed driver can, tests/test_study_e2e.py): that cell then starts over and its finished
    # search trials run again as new trials. (Before study/driver/tune_state.py read the pickled
    # search_gen_state-*.json as a pickle, every saved searcher looked torn: docs/cluster.md, 8.)
    torn = "Tune's saved state is unreadable" in log
    other = [r for r in before if f"/{first_cell}/" not in r.data.tags["cloce.trial_key"]
             and r.data.tags["cloce.trial_key"].startswith("search/")] if torn else []
    # per cell 2 search trials + seed 2's final
    assert len(keys) == 6 + len(other) and len(set(keys)) == len(keys), (keys, log[-4000:])
    assert all(r.info.status == "FINISHED" for r in children), [(r.data.tags["cloce.trial_key"], r.info.status)
                                                                for r in children]
    assert kept == {r.data.tags["cloce.trial_key"]: r.info.run_id for r in children
                    if f"/{first_cell}/" in r.data.tags["cloce.trial_key"]}
    table = Path(client.download_artifacts(parents[0].info.run_id, "results/fewshot_table.csv", str(tmp_path)))
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert sorted((r["variant"], r["K=2 seeds"]) for r in rows) == [("finetune", "2/2"), ("prompt_ki", "2/2")]
    assert (shared / "study" / "tables" / "fewshot_table.md").is_file()

    # No secret anywhere: not in the jobs' output, the Ray nodes' logs, the study dir, MLflow.
    for token, job, job_output in zip(tokens, (job_id, resumed_id), (output, resumed_output)):
        assert not (shared / "slurm" / f"job-{job}" / "ray_auth_token").exists(), "the token outlived its job"
        ray_sessions = list((slurm.root / "ray").glob(f"ray-{job}-*"))  # the nodes' Ray logs
        assert ray_sessions
        for where in (shared / "slurm", shared / "study", shared / "ray", *ray_sessions):
            assert not files_containing(where, token), where
        assert token not in (shared / "mlflow.db").read_bytes()
        for run in [*parents, *children]:
            assert token.decode() not in str(run.data.params) + str(run.data.tags)

    # Nothing of the jobs is left: no Ray, no step, no batch script.
    assert not job_processes(slurm, resumed_id), job_processes(slurm, resumed_id)
    assert not job_processes(slurm, job_id)


def test_near_the_time_limit_the_job_stops_its_study_and_ray_itself(slurm, tiny_semeval_dir, tiny_model_dir, tmp_path):
    """`--signal=B:USR1@<s>`: the batch script hears of the time limit first and stops in order."""
    shared = tmp_path / "shared"
    shared.mkdir()
    args = study_args(tiny_semeval_dir, tiny_model_dir, shared, ["prompt_ki", "finetune"])
    args[args.index("--epochs") + 1] = "50"  # longer than the job may run
    # One CPU: one trial trains at a time while the job waits for its limit (two would only burn
    # twice the CPU until then).
    job_id, output = submit(slurm, shared, args, "--nodes=1", "--cpus-per-task=1", "--time=2", "--signal=B:USR1@60")
    wait_for(lambda: "1 Ray node up" in text(output), "the Ray nodes", 300, slurm, job_id, output)
    state = slurm.wait_ended(job_id, timeout=300)
    record = slurm.sacct(job_id)
    log = output.read_text(errors="replace")
    print(f"{record}\n{log[-1500:]}")
    # It ended itself before the limit, with the exit code of its time-limit trap.
    assert (state, slurm.run("sacct", "-c", "-n", "-P", "-j", job_id, "-o", "ExitCode").stdout.split()) == (
        "FAILED", ["124:0"]), log[-4000:]
    assert "the time limit is near, stopping" in log and f"job {job_id}: Ray stopped" in log
    assert not (shared / "slurm" / f"job-{job_id}" / "ray_auth_token").exists()
    assert not job_processes(slurm, job_id), job_processes(slurm, job_id)
