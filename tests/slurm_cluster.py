"""A real single-node SLURM for tests: munged, slurmctld and slurmd started on this machine
with a slurm.conf written under one temp root, on free ports, and stopped again by process id.

Debian's `slurm-wlm` (22.05 on bookworm) has no file-based accounting storage
(`accounting_storage/filetxt` is gone; only `none` and `slurmdbd`), so the job records
`sacct` shows come from the job-completion log: `JobCompType=jobcomp/filetxt` and
`sacct --completion` (`-c`). That log holds one line per ended job with its final state
(COMPLETED, CANCELLED, TIMEOUT, FAILED) and exit code; steps are not in it.

Nothing here touches the machine's own munge or Slurm set-up (/etc/munge, /etc/slurm,
/run/munge): every path, socket and port is the cluster's own, the clients find it through
`SLURM_CONF`, and every process the cluster or its jobs start carries `CLOCE_SLURM_ROOT` in
its environment, which is how `leftovers()` finds them (slurmd starts each step's slurmstepd
detached, outside any process group of ours).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from experiments.local_cluster.processes import free_ports

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "sacct", "scancel", "squeue", "scontrol", "sinfo")
MARKER = "CLOCE_SLURM_ROOT"


def missing_slurm() -> str | None:
    """Why a SLURM cluster cannot be started here (None: it can)."""
    absent = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None
              and not Path("/usr/sbin", name).exists()]
    if absent:
        return (f"SLURM/munge not installed ({', '.join(absent)} missing): "
                "apt-get install -y --no-install-recommends slurm-wlm munge")
    if os.geteuid() != 0:
        return "the test SLURM runs slurmd as root (SlurmdUser=root), and this is not root"
    return None


def daemon(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def process_environ(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or a kernel thread
        return b""


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class SlurmCluster:
    """`nodes` SLURM nodes on this machine (NodeAddr 127.0.0.1), `cpus` each, one partition
    `test`. One node is named as the machine; more are `node1`, `node2`, ... with a slurmd
    each (its own port, spool, pid and log file: `%n` in slurm.conf), all on this host."""

    def __init__(self, root: Path, cpus: int = 2, kill_wait_s: int = 20, nodes: int = 1):
        self.root, self.cpus, self.kill_wait_s = Path(root), cpus, kill_wait_s
        self.host = socket.gethostname().split(".")[0]
        self.nodes = [self.host] if nodes == 1 else [f"node{i}" for i in range(1, nodes + 1)]
        self.conf = self.root / "etc" / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.jobcomp = self.root / "log" / "jobcomp.txt"
        self.processes: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------ environment

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for Slurm clients (and jobs: sbatch exports it to them)."""
        env = dict(os.environ if base is None else base)
        for name in [n for n in env if n.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            del env[name]
        env["SLURM_CONF"] = str(self.conf)
        env[MARKER] = str(self.root)
        env["PATH"] = os.pathsep.join([env.get("PATH", ""), "/usr/sbin"])
        return env

    # ------------------------------------------------------------ start

    def write_config(self) -> None:
        for sub in ("etc", "munge", "log", "ctld", "spool", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # munged refuses a key others may read and a socket dir others may write to; clients
        # reach the socket only if every directory above it is searchable by all.
        self.root.chmod(0o755)
        (self.root / "munge").chmod(0o755)
        for sub in ("etc", "log", "run"):
            (self.root / sub).chmod(0o700)
        key = self.root / "etc" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ctld_port, *slurmd_ports = free_ports(1 + len(self.nodes))
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
        self.conf.write_text("\n".join([
            "ClusterName=clocetest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"StateSaveLocation={self.root / 'ctld'}",
            f"SlurmdSpoolDir={self.root / 'spool'}/%n",
            f"SlurmctldPidFile={self.root / 'run' / 'slurmctld.pid'}",
            f"SlurmdPidFile={self.root / 'run' / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={self.root / 'log' / 'slurmd-%n.log'}",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # No cgroups here (a container): a step's processes are its descendants.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp}",
            "SchedulerType=sched/backfill",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "MpiDefault=none",
            "ReturnToService=2",
            # SIGTERM, then SIGKILL this many seconds later, when a job is cancelled or ends.
            f"KillWait={self.kill_wait_s}",
            "MinJobAge=300",
            "InactiveLimit=0",
            *[f"NodeName={node} NodeHostname={self.host} NodeAddr=127.0.0.1 Port={port} CPUs={self.cpus} "
              f"RealMemory={memory_mb // len(self.nodes)} State=UNKNOWN" for node, port in zip(self.nodes, slurmd_ports)],
            f"PartitionName=test Nodes={','.join(self.nodes)} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        for node in self.nodes:
            (self.root / "spool" / node).mkdir(exist_ok=True)

    def _start(self, name: str, command: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        # Its own session: a process group that is ours to signal, and nobody else's.
        self.processes[name] = subprocess.Popen(command, env=self.env(), cwd=str(self.root), stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def start(self, timeout: float = 120) -> None:
        self.write_config()
        self._start("munged", [
            daemon("munged"), "--foreground", f"--socket={self.munge_socket}",
            f"--key-file={self.root / 'etc' / 'munge.key'}", f"--pid-file={self.root / 'run' / 'munged.pid'}",
            f"--log-file={self.root / 'log' / 'munged.log'}", f"--seed-file={self.root / 'run' / 'munged.seed'}",
            "--num-threads=2",
        ])
        self._wait(lambda: self.munge_socket.exists(), "munged's socket", 30)
        self._start("slurmctld", [daemon("slurmctld"), "-D", "-c", "-f", str(self.conf)])
        self._wait(lambda: self._scontrol_ping(), "slurmctld", timeout)
        for node in self.nodes:
            self._start(f"slurmd-{node}", [daemon("slurmd"), "-D", "-N", node, "-f", str(self.conf)])
        self._wait(lambda: self.node_state().split() == ["IDLE"] * len(self.nodes), f"nodes {self.nodes} IDLE", timeout)

    def _scontrol_ping(self) -> bool:
        done = subprocess.run(["scontrol", "ping"], env=self.env(), capture_output=True, text=True, timeout=30)
        return "UP" in done.stdout

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited (rc {process.returncode}) while waiting for {what}:\n"
                                       + self.logs_tail())
            try:
                if ready():
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready in {timeout:.0f} s:\n{self.logs_tail()}")

    def logs_tail(self, chars: int = 3000) -> str:
        parts = []
        for log in sorted((self.root / "log").glob("*")):
            if log.name != "jobcomp.txt":
                parts.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    # ------------------------------------------------------------ clients

    def run(self, *command: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(list(command), env=env or self.env(), capture_output=True, text=True, timeout=timeout,
                              cwd=str(self.root))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed (rc {done.returncode}): {done.stdout}{done.stderr}")
        return done

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T").stdout.strip().upper()

    def sbatch(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
        done = subprocess.run(["sbatch", "--parsable", *args], env=env or self.env(), capture_output=True, text=True,
                              timeout=60, cwd=str(cwd or self.root))
        if done.returncode != 0:
            raise RuntimeError(f"sbatch failed (rc {done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout.strip().split(";")[0]

    def job_state(self, job_id: str) -> str | None:
        """squeue's state while the job is known to slurmctld, else None."""
        done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], env=self.env(), capture_output=True,
                              text=True, timeout=30)
        return done.stdout.strip() or None

    def sacct(self, job_id: str, fields: str = "JobID,JobName,Partition,NodeList,State,ExitCode,Start,End,Elapsed") -> str:
        """The job's record from the completion log (`sacct -c`), as sacct prints it."""
        return self.run("sacct", "-c", "-j", job_id, "-o", fields).stdout

    def final_state(self, job_id: str) -> str | None:
        rows = self.run("sacct", "-c", "-n", "-P", "-j", job_id, "-o", "JobID,State,ExitCode").stdout.split()
        for row in rows:
            jid, state, _ = row.split("|")
            if jid == job_id:
                return state
        return None

    def wait_ended(self, job_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.job_state(job_id) in (None, "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL",
                                          "OUT_OF_MEMORY"):
                state = self.final_state(job_id)
                if state:
                    return state
            time.sleep(2)
        raise TimeoutError(f"job {job_id} still {self.job_state(job_id)} after {timeout:.0f} s")

    # ------------------------------------------------------------ stop

    def leftovers(self) -> dict[int, str]:
        """Every process (but this one) started by the cluster or by one of its jobs."""
        marker = f"{MARKER}={self.root}".encode() + b"\0"
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                if marker in process_environ(int(entry.name)) + b"\0":
                    found[int(entry.name)] = command_line(int(entry.name))
        return found

    def stop(self) -> dict[int, str]:
        """Cancel what still runs, stop the daemons (SIGTERM, then SIGKILL), then SIGKILL any
        process left by a job; returns what had to be killed that way (empty: a clean stop)."""
        try:
            subprocess.run(["scancel", "--full", "-u", "root"], env=self.env(), capture_output=True, timeout=30)
            deadline = time.monotonic() + self.kill_wait_s + 30
            while time.monotonic() < deadline and self.run("squeue", "-h", "-o", "%i").stdout.strip():
                time.sleep(1)
        except (subprocess.SubprocessError, OSError, RuntimeError):
            pass
        # slurmd first, munged last (the others authenticate through it to the end).
        for name in sorted(self.processes, key=lambda n: DAEMONS.index(n.split("-")[0]), reverse=True):
            process = self.processes[name]
            if process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        for process in self.processes.values():  # the groups' other members, if any
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stragglers = self.leftovers()
        for pid in stragglers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return stragglers


def new_root(prefix: str = "slurm_") -> Path:
    """A short temp dir: Ray's and munge's unix sockets live under it (path limit ~107 bytes)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
