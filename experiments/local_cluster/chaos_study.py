"""The small study run on the local cluster (experiments/local_cluster/cluster.py), with its faults: the
plan submitted with `ray job submit`, the job's status and logs, its MLflow child runs, the
fault schedule (a lost node, a tracking server restart), and what was measured and checked
afterwards. The tiny model and SemEval slice it trains on are made in tests/support/tiny_inputs.py.
"""
from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from experiments.local_cluster.cluster import LocalCluster
from experiments.local_cluster.processes import ray_cli

REPO = Path(__file__).resolve().parents[2]
# Bulky or local-only paths never travel with the job (Ray also honours .gitignore).
UPLOAD_EXCLUDES = [
    ".git", "runs/", "outputs/", "mlruns/", "mlflow.db", "ray_results/", "shared/",
    "**/__pycache__", "*.egg-info", ".pytest_cache/", ".benchmarks/",
]


# ---------------------------------------------------------------- the study


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
            "python", "-m", "tests.support.faulty_study", "--experiment", "quick",
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
    done = subprocess.run(command, env=cluster.env(), cwd=str(REPO), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"ray job submit failed (rc {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return job_id


def job_status(cluster: LocalCluster, job_id: str) -> str:
    return str(cluster.job_client().get_job_status(job_id)).split(".")[-1]


def job_logs(cluster: LocalCluster, job_id: str) -> str:
    return cluster.job_client().get_job_logs(job_id)


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
