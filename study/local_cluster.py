"""A real Ray cluster and MLflow tracking server on this machine, a study submitted to it with
`ray job submit`, and the two faults a cluster sees: a lost node and a tracking server restart.

    python -m study.local_cluster demo           # start -> submit -> faults -> checks -> stop
    python -m study.local_cluster start          # start it and print its addresses (stays up)
    python -m study.local_cluster stop --root R  # stop what `start` started in R
    experiments/local_cluster.sh ...             # the same

What runs (each in its own temp dir under ROOT, each on free ports, all on 127.0.0.1):
- a Ray head (`ray start --head`, job server = dashboard), 0 CPUs and the `trial_driver`
  resource: the job driver, the Tune trial drivers and the Ray Train controllers live there;
- two Ray worker nodes (`ray start --address`, 2 CPUs each, label `cloce-node=worker-N`):
  separate raylets on one machine are separate Ray nodes; every trial's training lands here;
- an MLflow tracking server (`mlflow server`, SQLite backend + proxied artifacts dir);
- ROOT/shared: the Ray storage path (results, checkpoints), the study dir, data and model.

Every process is stopped by process id: each `ray start` / `mlflow server` runs in a session
of its own, and stop() signals that process group plus any process whose command line or
working directory lies under that node's temp dir, and their descendants. Never `ray stop`
(it kills every Ray process on the machine). tests/test_local_cluster.py runs the same code.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATE_FILE = "cluster.json"
# Bulky or local-only paths never travel with the job (Ray also honours .gitignore).
UPLOAD_EXCLUDES = [
    ".git", "runs/", "outputs/", "mlruns/", "mlflow.db", "ray_results/", "shared/",
    "**/__pycache__", "*.egg-info", ".pytest_cache/", ".benchmarks/",
]


# ---------------------------------------------------------------- processes, by id only


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def stable_port() -> int:
    """A free port below the kernel's ephemeral range, for a server that is restarted on the
    same port: while it is down, clients retrying it get ephemeral source ports, and one can
    land on the very port they dial and connect to itself (TCP simultaneous open), holding
    the port so the restarted server cannot bind it (seen here: 120 s of 'connection refused')."""
    import random

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return free_ports(1)[0]


def ray_cli() -> list[str]:
    """The `ray` CLI of this interpreter, whatever `ray` is first on PATH."""
    return [sys.executable, "-m", "ray.scripts.scripts"]


def cluster_env() -> dict[str, str]:
    """One environment for every node, the submitter and the checks: no token auth (loopback
    only; head and clients must agree), no cluster from outside, one thread per op."""
    env = dict(os.environ)
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
                 "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    env |= {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # The job's `python` is this interpreter (the one with ray and the project installed).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a live process, from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2])


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
        if marker in cmdline or cwd == marker or cwd.startswith(marker + "/"):
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


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with rc {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except Exception as err:  # not up yet
            last = err
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s: {last}")


# ---------------------------------------------------------------- the cluster


@dataclass
class Node:
    name: str  # head, worker-1, worker-2, mlflow
    pgid: int  # the session its starter opened: every daemon it forked is in this group
    temp_dir: str  # its own directory (Ray --temp-dir; MLflow's store)
    ports: dict = field(default_factory=dict)
    alive: bool = True


@dataclass
class LocalCluster:
    root: str
    nodes: dict = field(default_factory=dict)  # name -> Node
    cpus_per_worker: int = 2
    mlflow_command: list = field(default_factory=list)

    # -- addresses
    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.nodes['head'].ports['gcs']}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.nodes['head'].ports['dashboard']}"

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.nodes['mlflow'].ports['http']}"

    @property
    def shared(self) -> Path:
        return Path(self.root) / "shared"

    @property
    def workers(self) -> list[str]:
        return sorted(name for name in self.nodes if name.startswith("worker-"))

    def save(self) -> None:
        state = asdict(self)
        (Path(self.root) / STATE_FILE).write_text(json.dumps(state, indent=1))

    @classmethod
    def load(cls, root: str | Path) -> "LocalCluster":
        state = json.loads((Path(root) / STATE_FILE).read_text())
        state["nodes"] = {name: Node(**node) for name, node in state["nodes"].items()}
        return cls(**state)

    # -- start
    @classmethod
    def start(cls, root: str | Path | None = None, workers: int = 2, cpus_per_worker: int = 2,
              log=print) -> "LocalCluster":
        # A short root: Ray's unix sockets live under each temp dir (path limit ~107 bytes).
        root = Path(root or tempfile.mkdtemp(prefix="lcl_", dir="/tmp")).resolve()
        root.mkdir(parents=True, exist_ok=True)
        cluster = cls(str(root), cpus_per_worker=cpus_per_worker)
        for sub in ("ray", "study"):
            (cluster.shared / sub).mkdir(parents=True, exist_ok=True)
        try:
            started = time.perf_counter()
            cluster._start_head()
            for index in range(1, workers + 1):
                cluster._start_worker(f"worker-{index}")
            cluster.start_mlflow()
            cluster.save()
            cluster.wait_for_nodes(workers + 1, timeout=120)
            log(f"cluster up in {time.perf_counter() - started:.0f} s: {cluster.describe()}")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _ray_start(self, name: str, args: list[str], ports: dict) -> Node:
        temp_dir = str(Path(self.root) / name)
        Path(temp_dir).mkdir(parents=True, exist_ok=True)
        command = [*ray_cli(), "start", *args, "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
                   f"--node-manager-port={ports['node_manager']}", f"--object-manager-port={ports['object_manager']}",
                   f"--dashboard-agent-listen-port={ports['agent_http']}",
                   f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
                   f"--runtime-env-agent-port={ports['env_agent']}", f"--metrics-export-port={ports['metrics']}",
                   # Worker processes bind random free ports, not the shared 10002-19999 range.
                   "--min-worker-port=0", "--max-worker-port=0",
                   # A small object store: trials pass only metrics and checkpoint paths through it.
                   f"--object-store-memory={300 * 2**20}",
                   f"--labels=cloce-node={name}", "--disable-usage-stats", "--log-style=record"]
        # Its own session: every daemon it forks shares this process group, ours to signal.
        starter = subprocess.Popen(command, env=cluster_env(), cwd=temp_dir, start_new_session=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        node = Node(name, starter.pid, temp_dir, ports)
        self.nodes[name] = node
        try:
            output, _ = starter.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            starter.kill()
            output, _ = starter.communicate()
            raise RuntimeError(f"`ray start` of {name} did not return in 240 s:\n{output[-3000:]}") from None
        (Path(temp_dir) / "ray_start.log").write_text(output)
        if starter.returncode != 0:
            raise RuntimeError(f"`ray start` of {name} failed (rc {starter.returncode}):\n{output[-3000:]}")
        return node

    @staticmethod
    def _node_ports() -> dict:
        names = ("node_manager", "object_manager", "agent_http", "agent_grpc", "env_agent", "metrics")
        return dict(zip(names, free_ports(len(names))))

    def _start_head(self) -> None:
        ports = self._node_ports() | dict(zip(("gcs", "dashboard", "client"), free_ports(3)))
        import importlib.util

        client = [f"--ray-client-server-port={ports['client']}"] if importlib.util.find_spec("grpc") else []
        self._ray_start("head", [
            "--head", f"--port={ports['gcs']}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports['dashboard']}", *client,
            # No CPUs: training lands on the workers. `trial_driver`: the Tune trial drivers
            # (study/stages.py: trial_resources) and, next to them, the Ray Train controllers.
            "--num-cpus=0", '--resources={"trial_driver": 100}',
        ], ports)
        wait_http(f"{self.dashboard_url}/api/version", timeout=120)

    def _start_worker(self, name: str) -> None:
        self._ray_start(name, [f"--address={self.gcs_address}", f"--num-cpus={self.cpus_per_worker}"],
                        self._node_ports())

    def start_mlflow(self, log=None) -> None:
        """`mlflow server` on the same store each time (a restart keeps every run)."""
        store = Path(self.root) / "mlflow"
        (store / "artifacts").mkdir(parents=True, exist_ok=True)
        if not self.mlflow_command:
            port = stable_port()
            self.mlflow_command = [
                str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
                "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                "--artifacts-destination", str(store / "artifacts"),
                # One process, no uvicorn supervisor: with several, a restart on a busy machine
                # looped (each worker killed after failing the supervisor's 5 s health ping
                # while still importing MLflow; seen with 2 workers and 4 trials on 2 cores).
                "--workers", "1", "--uvicorn-opts", "--timeout-worker-healthcheck 120",
            ]
        port = int(self.mlflow_command[self.mlflow_command.index("--port") + 1])
        with open(store / "server.log", "a") as out:
            process = subprocess.Popen(self.mlflow_command, env=cluster_env(), cwd=str(store),
                                       start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        self.nodes["mlflow"] = Node("mlflow", process.pid, str(store), {"http": port})
        try:
            wait_http(f"{self.tracking_uri}/health", timeout=240, process=process)
        except (TimeoutError, RuntimeError) as err:
            log_tail = (store / "server.log").read_text()[-3000:]
            raise RuntimeError(f"mlflow server did not start: {err}\n{log_tail}") from None
        if log:
            log(f"mlflow server up at {self.tracking_uri} (pid {process.pid})")

    def stop_mlflow(self) -> None:
        node = self.nodes["mlflow"]
        # The server's own processes only (its group and children), not whatever uses the store.
        left = stop_processes(node.pgid, None)
        if left:
            raise RuntimeError(f"mlflow server processes survived: {left}")
        node.alive = False

    def describe(self) -> str:
        return (f"Ray head {self.gcs_address} (job server {self.dashboard_url}), workers "
                f"{', '.join(self.workers)} x {self.cpus_per_worker} CPUs, MLflow {self.tracking_uri}, "
                f"shared storage {self.shared}")

    # -- Ray state, from a driver connected to the cluster (a subprocess: this one stays clean)
    def ray_state(self) -> dict:
        code = """
import json, ray
ray.init(address=%r, logging_level="ERROR", log_to_driver=False)
from ray.util import placement_group_table
nodes = [{"name": (n.get("Labels") or {}).get("cloce-node"), "alive": n["Alive"], "node_id": n["NodeID"],
          "resources": n.get("Resources", {})} for n in ray.nodes()]
pgs = placement_group_table()
print("STATE" + json.dumps({"nodes": nodes, "placement_groups": {k: v["state"] for k, v in pgs.items()},
      "placement_group_names": {k: v.get("name", "") for k, v in pgs.items()},
      "total": ray.cluster_resources(), "available": ray.available_resources()}))
ray.shutdown()
""" % self.gcs_address
        done = subprocess.run([sys.executable, "-c", code], env=cluster_env(), capture_output=True, text=True,
                              timeout=120, cwd=self.root)
        for line in done.stdout.splitlines():
            if line.startswith("STATE"):
                return json.loads(line[5:])
        raise RuntimeError(f"could not read the cluster's state: {done.stdout[-2000:]}{done.stderr[-2000:]}")

    def wait_for_nodes(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(n["alive"] for n in self.ray_state()["nodes"]) >= count:
                return
            time.sleep(1)
        raise TimeoutError(f"{count} Ray nodes were not up in {timeout:.0f} s")

    # -- faults
    def raylet_pid(self, name: str) -> int:
        node = self.nodes[name]
        for pid in own_processes(node.pgid, node.temp_dir):
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
            except OSError:
                continue
        raise RuntimeError(f"no raylet process found for {name}")

    def kill_node(self, name: str) -> int:
        """SIGKILL the node's raylet: its workers go with it, as when a machine is lost."""
        pid = self.raylet_pid(name)
        os.kill(pid, signal.SIGKILL)
        self.nodes[name].alive = False
        self.save()
        return pid

    # -- stop
    def stop(self) -> dict:
        """Every process this cluster started, by process group / temp dir; never `ray stop`."""
        survivors = {}
        # Workers first, the head (GCS) last: nodes then leave a cluster that is still there.
        order = [n for n in self.nodes if n.startswith("worker-")] + [n for n in ("mlflow", "head") if n in self.nodes]
        for name in order:
            node = self.nodes[name]
            left = stop_processes(node.pgid, node.temp_dir if name != "mlflow" else None)
            if left:
                survivors[name] = left
            node.alive = False
        return survivors

    def leftover_processes(self) -> list[int]:
        return sorted({pid for name, node in self.nodes.items()
                       for pid in own_processes(node.pgid, node.temp_dir if name != "mlflow" else None)})


# ---------------------------------------------------------------- the study


def make_tiny_model(directory: Path) -> str:
    """A tiny random BERT masked LM with the bundled tokenizer (as tests/conftest.py)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from cloce.backbone import default_model_path

    if (directory / "config.json").exists():
        return str(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    BertForMaskedLM(config).save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(default_model_path()).save_pretrained(str(directory))
    return str(directory)


def make_semeval_slice(directory: Path, source: Path | None = None) -> str:
    """Every SemEval training sentence (K-shot samples need them), every 40th val, 60th test."""
    from cloce.data.dataset import default_data_dir

    source = Path(source or default_data_dir())
    if not (source / "train.txt").exists():
        raise FileNotFoundError(f"SemEval not found at {source} (pass --data-dir)")
    directory.mkdir(parents=True, exist_ok=True)
    for split, every in (("train", 1), ("val", 40), ("test", 60)):
        lines = (source / f"{split}.txt").read_text().splitlines()
        (directory / f"{split}.txt").write_text("\n".join(lines[::every]) + "\n")
    (directory / "rel2id.json").write_text((source / "rel2id.json").read_text())
    return str(directory)


@dataclass
class StudyPlan:
    """A small study: 2 cells x (2 search trials + seed 2's final; seed 1 reuses its search
    run) = 6 trials, one Ray Train worker each (1 CPU), every epoch slowed by `slow_s` so a
    fault lands mid-trial."""

    model: str
    data_dir: str
    variants: tuple = ("prompt_ki", "finetune")
    epochs: int = 5
    slow_s: float = 3.0
    workers_per_trial: int = 1
    retry_s: float = 300.0  # CLOCE_TRACKING_RETRY_S of every trial

    @property
    def expected_trials(self) -> int:
        return len(self.variants) * 3

    def args(self, cluster: LocalCluster) -> list[str]:
        return [
            "python", "study/run_fewshot_grid.py", "--experiment", "quick",
            "--variants", *self.variants, "--ks", "2", "--seeds", "1", "2", "--num-samples", "2",
            "--epochs", str(self.epochs), "--workers-per-trial", str(self.workers_per_trial),
            "--model", self.model, "--data-dir", self.data_dir,
            "--study-dir", str(cluster.shared / "study"), "--tracking-uri", cluster.tracking_uri,
            "--storage-path", str(cluster.shared / "ray"),
            "--set", "search.asha=false", "--set", "train.num_threads=1", "--set", "resources.cpus_per_worker=1",
            "--set", "train.bf16=false",
            # Every epoch checkpointed (quick.toml checkpoints only every 60 s): the lost node's
            # trials must resume from the epoch they had reached, not from scratch.
            "--set", "resources.checkpoint_every_s=0",
        ]

    def env_vars(self, cluster: LocalCluster) -> dict:
        faults_dir = cluster.shared / "faults"
        faults_dir.mkdir(exist_ok=True)
        return {"CLOCE_FAULTS": f"slow=*:*:{self.slow_s:g}", "CLOCE_FAULTS_DIR": str(faults_dir),
                "CLOCE_TRACKING_RETRY_S": f"{self.retry_s:g}", "OMP_NUM_THREADS": "1"}


def submit(cluster: LocalCluster, plan: StudyPlan, log=print) -> str:
    """`ray job submit --no-wait` of the study; returns the submission id."""
    job_id = f"cloce_local_{int(time.time())}"
    command = [*ray_cli(), "job", "submit", "--address", cluster.dashboard_url, "--submission-id", job_id,
               "--no-wait", "--log-style", "record", "--working-dir", str(REPO),
               "--runtime-env-json", json.dumps({"excludes": UPLOAD_EXCLUDES, "env_vars": plan.env_vars(cluster)}),
               "--", *plan.args(cluster)]
    log(f"$ ray job submit --address {cluster.dashboard_url} --working-dir {REPO} -- {' '.join(plan.args(cluster))}")
    done = subprocess.run(command, env=cluster_env(), cwd=str(REPO), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"ray job submit failed (rc {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return job_id


def job_status(cluster: LocalCluster, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return str(JobSubmissionClient(cluster.dashboard_url).get_job_status(job_id)).split(".")[-1]


def job_logs(cluster: LocalCluster, job_id: str) -> str:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(cluster.dashboard_url).get_job_logs(job_id)


def mlflow_children(uri: str, experiment: str = "cloce-quick") -> tuple[list, list]:
    """(parent runs, child runs) of the study's experiment, read from the tracking server."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return [], []
    runs = client.search_runs([found.experiment_id], max_results=1000)
    return ([r for r in runs if "mlflow.parentRunId" not in r.data.tags],
            [r for r in runs if "mlflow.parentRunId" in r.data.tags])


def first_child_run(cluster: LocalCluster, found, timeout: float, what: str):
    """Polls the study's child runs once a second until `found(run)` returns something for one
    of them; that value. The tracking server may be down meanwhile (the outage)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, children = mlflow_children(cluster.tracking_uri)
        except Exception:
            children = []
        for run in children:
            if run.info.status == "RUNNING" and (value := found(run)) is not None:
                return value
        time.sleep(1)
    raise TimeoutError(f"{what} in {timeout:.0f} s")


def wait_for_resumed(cluster: LocalCluster, victim: str, timeout: float, log=print) -> str:
    """A trial of the killed node that has started again on another node (its placements
    tag has a second entry) and is training: the tracking outage then lands mid-trial."""
    def resumed(run):
        placements = run.data.tags.get("placements", "").split(",")
        if placements[0].startswith(f"{victim}:") and len(placements) > 1:
            log(f"resumed: {run.data.tags.get('cloce.trial_key')} on {placements[-1]} (node:from_epoch)")
            return run.data.tags.get("cloce.trial_key")
        return None

    return first_child_run(cluster, resumed, timeout, f"no trial of the killed node {victim} started again elsewhere")


def wait_for_victim(cluster: LocalCluster, min_epochs: int, timeout: float, log=print) -> tuple[str, str, int]:
    """(node, trial key, epochs logged) of a running trial on a worker node that has logged
    `min_epochs` epochs (each is logged just before its checkpoint is reported, so epoch
    `min_epochs - 1`'s checkpoint is registered by then)."""
    def victim(run):
        node, done = run.data.tags.get("node"), run.data.metrics.get("epochs_done", 0)
        if node in cluster.workers and min_epochs <= done:
            log(f"victim: {node} (trial {run.data.tags.get('cloce.trial_key')} at epoch {done:.0f})")
            return node, run.data.tags.get("cloce.trial_key"), int(done)
        return None

    return first_child_run(cluster, victim, timeout, f"no trial reached epoch {min_epochs} on a worker")


def run_chaos_study(cluster: LocalCluster, plan: StudyPlan, faults: bool = True, outage_s: float = 30.0,
                    timeout: float = 900, log=print) -> dict:
    """Submit the study; with `faults`: kill the raylet of a worker node running a trial that
    has checkpointed; once one of its trials trains again on another node, stop the tracking
    server for `outage_s` and start it again on the same store; wait for the job; return what
    happened (see measure)."""
    events = {"submitted": time.time()}
    job_id = submit(cluster, plan, log)
    victim = victim_trial = None
    try:
        if faults:
            victim, victim_trial, epochs_logged = wait_for_victim(cluster, min_epochs=2, timeout=timeout / 2, log=log)
            pid = cluster.kill_node(victim)
            events["killed"] = {"node": victim, "raylet_pid": pid, "at": time.time(), "trial": victim_trial,
                                "epochs_logged": epochs_logged}
            log(f"SIGKILL raylet of {victim} (pid {pid})")
            events["resumed"] = {"trial": wait_for_resumed(cluster, victim, timeout=timeout / 2, log=log),
                                 "at": time.time()}
            cluster.stop_mlflow()
            events["mlflow_stopped"] = time.time()
            log(f"mlflow server stopped; {outage_s:.0f} s outage")
            time.sleep(outage_s)
            cluster.start_mlflow(log=log)
            cluster.save()
            events["mlflow_started"] = time.time()
        deadline = time.monotonic() + timeout
        status = job_status(cluster, job_id)
        while status in ("PENDING", "RUNNING") and time.monotonic() < deadline:
            time.sleep(3)
            status = job_status(cluster, job_id)
    finally:
        logs = ""
        try:
            logs = job_logs(cluster, job_id)
        except Exception as err:  # the job server is gone: say so in the report
            logs = f"(could not read the job's logs: {err})"
        (Path(cluster.root) / "job.log").write_text(logs)
    events["finished"] = time.time()
    outage = (events["mlflow_stopped"], events["mlflow_started"]) if "mlflow_started" in events else None
    report = measure(cluster, plan, victim, outage)
    # Ray folds repeated log lines ("[repeated 2x across cluster]"): a lower bound.
    report |= {"victim_trial": victim_trial,
               "tracking_retries_recovered": logs.count("answered again after"), "job_id": job_id, "job_status": status, "events": events,
               "study_seconds": round(events["finished"] - events["submitted"], 1),
               "job_log_tail": logs[-3000:]}
    (Path(cluster.root) / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def measure(cluster: LocalCluster, plan: StudyPlan, victim: str | None,
            outage: tuple[float, float] | None = None) -> dict:
    """Facts for the checks: runs per trial key, where each trial trained, metric steps (and
    how many were measured while the tracking server was down, `outage` = (stopped, started)
    in epoch seconds: they carry the time they were logged, so they arrived after the restart),
    the parent's artifacts, placement groups and resources still held."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=cluster.tracking_uri)
    parents, children = mlflow_children(cluster.tracking_uri)
    trials = {}
    for run in children:
        history = client.get_metric_history(run.info.run_id, "val_micro_f1")
        steps = sorted(m.step for m in history)
        during = [m.step for m in history if outage and outage[0] * 1000 <= m.timestamp <= outage[1] * 1000]
        tags = run.data.tags
        trials[tags.get("cloce.trial_key", run.info.run_id)] = {
            "status": run.info.status, "node": tags.get("node"), "device": tags.get("device"),
            "placements": tags.get("placements", ""), "val_steps": steps, "steps_logged_during_outage": during,
            "epochs_done": run.data.metrics.get("epochs_done"), "error": tags.get("error"),
        }
    keys = [r.data.tags.get("cloce.trial_key") for r in children]
    first_nodes = Counter(t["placements"].split(",")[0].split(":")[0] for t in trials.values() if t["placements"])
    moved = {k: t for k, t in trials.items() if victim and t["placements"].startswith(f"{victim}:")
             and len(t["placements"].split(",")) > 1}
    artifacts = []
    if parents:
        artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id, "results")]
    state = cluster.ray_state()
    alive = [n for n in state["nodes"] if n["alive"]]
    held = {name: state["total"].get(name, 0) - state["available"].get(name, 0)
            for name in ("CPU", "trial_driver") if state["total"].get(name, 0) - state["available"].get(name, 0) > 1e-6}
    return {
        "parents": len(parents), "parent_status": parents[0].info.status if parents else None,
        "child_runs": len(children), "unique_trial_keys": len(set(keys)), "expected_trials": plan.expected_trials,
        "trials": trials, "trials_first_trained_on": dict(first_nodes),
        "attempts_per_node": dict(Counter(p.split(":")[0] for t in trials.values()
                                          for p in t["placements"].split(",") if p)),
        "victim": victim, "moved_trials": moved, "worker_names": cluster.workers,
        "val_points_logged_during_outage": sum(len(t["steps_logged_during_outage"]) for t in trials.values()),
        "parent_artifacts": artifacts,
        "placement_groups": dict(Counter(state["placement_groups"].values())),
        "alive_nodes": sorted(str(n["name"]) for n in alive), "resources_held": held,
    }


def problems(report: dict, plan: StudyPlan, faults: bool = True) -> list[str]:
    """What the recipe promises, checked; empty when all holds."""
    out = []
    if report["job_status"] != "SUCCEEDED":
        out.append(f"job ended {report['job_status']}")
    if report["parents"] != 1 or report["parent_status"] != "FINISHED":
        out.append(f"parent runs: {report['parents']} ({report['parent_status']})")
    if not report["child_runs"] == report["unique_trial_keys"] == plan.expected_trials:
        out.append(f"child runs {report['child_runs']}, trial keys {report['unique_trial_keys']}, "
                   f"expected {plan.expected_trials} (every trial exactly once)")
    for key, trial in report["trials"].items():
        if trial["status"] != "FINISHED":
            out.append(f"{key}: {trial['status']} ({trial['error']})")
        if trial["val_steps"] != list(range(1, plan.epochs + 1)):
            out.append(f"{key}: val_micro_f1 logged at steps {trial['val_steps']}, expected each of 1..{plan.epochs} once")
        if trial["node"] not in report.get("worker_names", ["worker-1", "worker-2"]) or not trial["device"]:
            out.append(f"{key}: node/device tags {trial['node']!r}/{trial['device']!r}")
    if len(report["trials_first_trained_on"]) < 2:
        out.append(f"trials started on {report['trials_first_trained_on']}, not on both workers")
    for name in ("fewshot_table.md", "fewshot_table.csv", "learning_curves.png", "f1_vs_k.png"):
        if f"results/{name}" not in report["parent_artifacts"]:
            out.append(f"parent run lacks results/{name}")
    if faults:
        if not report["moved_trials"]:
            out.append(f"no trial of the killed node {report['victim']} moved to another node")
        # The trial chosen for the kill had logged 2 epochs, so epoch 1's checkpoint at least
        # was registered: it must resume from it. Any moved trial that re-trained an epoch it
        # had logged shows that step twice (checked above for every trial).
        chosen = report["trials"].get(report.get("victim_trial") or "", {})
        resumed = [int(p.split(":")[1]) for p in chosen.get("placements", "").split(",")[1:]]
        if not resumed or min(resumed) < 1:
            out.append(f"{report.get('victim_trial')}: placements {chosen.get('placements')!r}, "
                       "expected a restart on another node from epoch >= 1 (its checkpoint)")
        # Evidence that what was logged meanwhile arrived: calls that failed while the server was
        # down and went through after it (`answered again`), and (checked above) every epoch in
        # every run. Points measured in the outage are counted too, but an epoch measured just
        # before the stop whose logging then waited out the outage carries an earlier time.
        if not report["tracking_retries_recovered"]:
            out.append("no MLflow call waited out the tracking outage: it missed the trials")
    leftover = {state: n for state, n in report["placement_groups"].items() if state != "REMOVED"}
    if leftover:
        out.append(f"placement groups still held after the study: {leftover}")
    if report["resources_held"]:
        out.append(f"resources still held after the study: {report['resources_held']}")
    return out


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="demo", choices=["demo", "start", "stop", "state"])
    parser.add_argument("--root", help="directory for every node's temp dir and the shared storage "
                        "(default: a new /tmp/lcl_*; keep it short, Ray's sockets live under it)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=int, default=2)
    parser.add_argument("--model", help="backbone dir/id (default: a tiny random BERT made under ROOT/shared)")
    parser.add_argument("--data-dir", help="SemEval dir to slice (default: ../shared/datasets/semeval)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--slow", type=float, default=3.0, help="seconds added to every epoch (CLOCE_FAULTS slow=)")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the tracking server is down")
    parser.add_argument("--no-faults", action="store_true", help="no node kill, no tracking server restart")
    parser.add_argument("--keep", action="store_true", help="demo: leave the cluster running at the end")
    args = parser.parse_args(argv)

    if args.command == "stop":
        if not args.root:
            parser.error("stop needs --root (printed by start)")
        cluster = LocalCluster.load(args.root)
        survivors = cluster.stop()
        cluster.save()
        print(f"stopped {', '.join(cluster.nodes)}" + (f"; survivors: {survivors}" if survivors else ""))
        return 1 if survivors else 0
    if args.command == "state":
        print(json.dumps(LocalCluster.load(args.root).ray_state(), indent=1))
        return 0

    cluster = LocalCluster.start(args.root, args.workers, args.cpus_per_worker)
    print(f"root             {cluster.root}\nRAY_ADDRESS      {cluster.dashboard_url}   (ray job submit --address)\n"
          f"GCS              {cluster.gcs_address}   (ray.init(address=...))\n"
          f"MLflow           {cluster.tracking_uri}\nshared storage   {cluster.shared}", flush=True)
    if args.command == "start":
        print(f"stop it with: python -m study.local_cluster stop --root {cluster.root}")
        return 0
    code = 1
    try:
        model = args.model or make_tiny_model(cluster.shared / "tiny_bert")
        data = make_semeval_slice(cluster.shared / "semeval", args.data_dir)
        plan = StudyPlan(model=model, data_dir=data, epochs=args.epochs, slow_s=args.slow)
        report = run_chaos_study(cluster, plan, faults=not args.no_faults, outage_s=args.outage)
        found = problems(report, plan, faults=not args.no_faults)
        print_report(report)
        print("\nchecks: " + ("all passed" if not found else "FAILED\n  " + "\n  ".join(found)))
        print(f"report: {cluster.root}/report.json; job log: {cluster.root}/job.log")
        code = 0 if not found else 1
    finally:
        if not args.keep:
            survivors = cluster.stop()
            print("cluster stopped" + (f"; survivors: {survivors}" if survivors else " (no process left)"))
        else:
            cluster.save()
            print(f"left running: python -m study.local_cluster stop --root {cluster.root}")
    return code


def print_report(report: dict) -> None:
    print(f"\njob {report['job_id']}: {report['job_status']} in {report['study_seconds']} s")
    print(f"MLflow: {report['parents']} parent run ({report['parent_status']}), {report['child_runs']} child runs, "
          f"{report['unique_trial_keys']} trial keys (expected {report['expected_trials']})")
    print(f"trials first trained on: {report['trials_first_trained_on']}; attempts per node: {report['attempts_per_node']}")
    for key, trial in sorted(report["trials"].items()):
        print(f"  {key:34s} {trial['status']:9s} node {trial['node']} device {trial['device']} "
              f"placements {trial['placements']} val steps {trial['val_steps']}")
    print(f"killed node: {report['victim']} (chosen with trial {report.get('victim_trial')} running); "
          f"its trials moved: {sorted(report['moved_trials'])}")
    print(f"tracking server outage: {report['val_points_logged_during_outage']} val_micro_f1 points measured while it "
          f"was down arrived later; {report['tracking_retries_recovered']} MLflow calls (at least) recovered after retries")
    print(f"parent artifacts: {report['parent_artifacts']}")
    print(f"placement groups after the study: {report['placement_groups']}; resources held: {report['resources_held']}; "
          f"alive nodes: {report['alive_nodes']}")


if __name__ == "__main__":
    sys.exit(main())
