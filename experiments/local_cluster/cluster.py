"""A real Ray cluster and MLflow tracking server on this machine, and the two faults a cluster
sees: a lost node and a tracking server restart (experiments/local_cluster/chaos_study.py
submits a study to it with `ray job submit` and times them).

What runs (each in its own temp dir under ROOT, each on free ports, all on 127.0.0.1):
- a Ray head (`ray start --head`, job server = dashboard), 0 CPUs and the `trial_driver`
  resource: the job driver, the Tune trial drivers and the Ray Train controllers live there;
- two Ray worker nodes (`ray start --address`, 2 CPUs each, label `cloce-node=worker-N`):
  separate raylets on one machine are separate Ray nodes; every trial's training lands here;
- an MLflow tracking server (`mlflow server`, SQLite backend + proxied artifacts dir);
- ROOT/secrets (0700): the Ray auth token (0600, experiments/local_cluster/locks.py): every node,
  the submitter and the checks run with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH;
- ROOT/shared: the Ray storage path (results, checkpoints), the study dir, data and model.

Every process is stopped by process id: each `ray start` / `mlflow server` runs in a session
of its own, and stop() signals that process group plus any process whose command line or
working directory lies under that node's temp dir, and their descendants. Never `ray stop`
(it kills every Ray process on the machine). tests/test_local_cluster.py runs the same code.
The process helpers are in experiments/local_cluster/processes.py; the study, its faults and checks in
experiments/local_cluster/chaos_study.py; the command line (demo, start, stop) in experiments/local_cluster/cli.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from experiments.local_cluster.locks import bearer, new_ray_token
from experiments.local_cluster.processes import (
    TRACKING_SERVER_ENV, cluster_env, free_ports, own_processes, ray_cli, stop_processes, wait_http,
)

STATE_FILE = "cluster.json"

# The ports `ray start` gives each node (the head adds its GCS, dashboard and client ports).
NODE_PORTS = ("node_manager", "object_manager", "agent_http", "agent_grpc", "env_agent", "metrics")


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
    token_path: str = ""  # ROOT/secrets/ray_auth_token (0600): head, workers and clients read it

    def env(self) -> dict[str, str]:
        return cluster_env(self.token_path)

    def job_client(self):
        """A job API client that presents the token (this process's own Ray may have auth off)."""
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard_url, headers=bearer(self.token_path))

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
        cluster = cls(str(root), cpus_per_worker=cpus_per_worker, token_path=str(new_ray_token(root)))
        for sub in ("ray", "study"):
            (cluster.shared / sub).mkdir(parents=True, exist_ok=True)
        try:
            started = time.perf_counter()
            cluster._start_head()
            names = [f"worker-{index}" for index in range(1, workers + 1)]
            # One draw for every port still to bind: no two daemons are handed the same one.
            *node_ports, (mlflow_port,) = cls._port_sets([len(NODE_PORTS)] * workers + [1])
            cluster.mlflow_command = cluster._mlflow_command(mlflow_port)
            # The workers and the tracking server start side by side: each spends most of its
            # start waiting (their imports, the head's answers).
            with ThreadPoolExecutor(len(names) + 1) as pool:
                starts = [pool.submit(cluster._start_worker, name, dict(zip(NODE_PORTS, ports)))
                          for name, ports in zip(names, node_ports)]
                starts.append(pool.submit(cluster.start_mlflow))
                for start in starts:
                    start.result()
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
        starter = subprocess.Popen(command, env=self.env(), cwd=temp_dir, start_new_session=True,
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
        return dict(zip(NODE_PORTS, free_ports(len(NODE_PORTS))))

    @staticmethod
    def _port_sets(sizes: list[int]) -> list[list[int]]:
        ports = iter(free_ports(sum(sizes)))
        return [[next(ports) for _ in range(size)] for size in sizes]

    def _start_head(self) -> None:
        ports = self._node_ports() | dict(zip(("gcs", "dashboard", "client"), free_ports(3)))
        import importlib.util

        client = [f"--ray-client-server-port={ports['client']}"] if importlib.util.find_spec("grpc") else []
        self._ray_start("head", [
            "--head", f"--port={ports['gcs']}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports['dashboard']}", *client,
            # No CPUs: training lands on the workers. `trial_driver`: the Tune trial drivers
            # (study/driver/cells.py: trial_resources) and, next to them, the Ray Train controllers.
            "--num-cpus=0", '--resources={"trial_driver": 100}',
        ], ports)
        wait_http(f"{self.dashboard_url}/api/version", timeout=120, headers=bearer(self.token_path))

    def _start_worker(self, name: str, ports: dict) -> None:
        self._ray_start(name, [f"--address={self.gcs_address}", f"--num-cpus={self.cpus_per_worker}"], ports)

    def _mlflow_command(self, port: int) -> list[str]:
        store = Path(self.root) / "mlflow"
        return [
            str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination", str(store / "artifacts"),
            # One process, no uvicorn supervisor: with several, a restart on a busy machine
            # looped (each worker killed after failing the supervisor's 5 s health ping
            # while still importing MLflow; seen with 2 workers and 4 trials on 2 cores).
            "--workers", "1", "--uvicorn-opts", "--timeout-worker-healthcheck 120",
        ]

    def start_mlflow(self, log=None) -> None:
        """`mlflow server` on the same store each time (a restart keeps every run)."""
        store = Path(self.root) / "mlflow"
        (store / "artifacts").mkdir(parents=True, exist_ok=True)
        if not self.mlflow_command:
            # below the ephemeral range: a restart finds it free (free_ports.py)
            self.mlflow_command = self._mlflow_command(free_ports(1)[0])
        port = int(self.mlflow_command[self.mlflow_command.index("--port") + 1])
        with open(store / "server.log", "a") as out:
            process = subprocess.Popen(self.mlflow_command, env=self.env() | TRACKING_SERVER_ENV, cwd=str(store),
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
        done = subprocess.run([sys.executable, "-c", code], env=self.env(), capture_output=True, text=True,
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
