"""A real cluster on this machine (docs/cluster.md, "A verified recipe on one machine"): a Ray
head with 0 CPUs + two 1-CPU worker nodes (the demo's have 2; `ray start`, each its own temp
dir, free ports), a real `mlflow server` (SQLite + artifacts dir) as the tracking URI over
HTTP, shared storage; a small study (one cell, three trials, a Ray Train worker each)
submitted with `ray job submit`; then one worker's raylet SIGKILLed mid-study and the
tracking server stopped for 12 s (the demo: 30 s) and started again on the same store.
The code is experiments/local_cluster/cluster.py (the cluster) and experiments/local_cluster/chaos_study.py (the study), the same
that `experiments/local_cluster.sh` runs.

Only this test's processes are stopped, by process group / temp dir (never `ray stop`).
The fast tests at the end check the tracking retries on their own.
"""
from __future__ import annotations

import importlib
import importlib.util
import shutil
import tempfile
from pathlib import Path

import pytest

from study.tracking import runs as tracking
from study.tracking import retry as tracking_retry


def missing_cluster_tools() -> str | None:
    """Why a Ray cluster with a job server cannot be started here (None: it can)."""
    if importlib.util.find_spec("ray") is None:
        return "the `ray` CLI is not installed (pip install 'ray[default]')"
    try:
        importlib.import_module("ray.dashboard.optional_deps")
    except ImportError as err:
        return f"Ray's job server (the dashboard) needs ray[default], not installed here ({err})"
    if not Path("/proc/self/stat").exists():
        return "needs /proc (Linux) to find and stop only this test's processes"
    return None


@pytest.fixture(scope="module")
def chaos_study(tiny_semeval_dir, tiny_model_dir):
    reason = missing_cluster_tools()
    if reason:
        pytest.skip(reason)
    from experiments.local_cluster.chaos_study import StudyPlan, problems, run_chaos_study
    from experiments.local_cluster.cluster import LocalCluster
    from experiments.local_cluster.cli import print_report

    root = tempfile.mkdtemp(prefix="lcl_", dir="/tmp")  # short: Ray's unix sockets live under it
    # One CPU per worker node and one cell (the demo: two of each): its two search trials can only
    # start on different nodes, and the killed node's trial waits for the survivor's CPU. Half the
    # demo's trials: with a Ray Train worker each, a trial starts five processes (~28 CPU s here).
    cluster = LocalCluster.start(root, cpus_per_worker=1)
    try:
        plan = StudyPlan(model=str(tiny_model_dir), data_dir=str(tiny_semeval_dir), variants=("prompt_ki",))
        # 12 s: epochs end every ~3 s (plan.slow_s), so calls still wait out the outage; the demo keeps 30 s.
        report = run_chaos_study(cluster, plan, faults=True, outage_s=12.0, timeout=900)
        found = problems(report, plan, faults=True)
        print_report(report)  # what was measured (pytest -s shows it)
    except BaseException:
        print(f"logs kept in {root} (nodes' temp dirs, mlflow/server.log, job.log)")
        raise
    finally:
        survivors = cluster.stop()
        leftover = cluster.leftover_processes()
    if not found:
        shutil.rmtree(root, ignore_errors=True)
    assert not survivors and not leftover, f"processes of this test survived: {survivors} {leftover}"
    return report, plan, found


def show(report: dict) -> str:
    lines = [f"{key}: {trial}" for key, trial in sorted(report["trials"].items())]
    return "\n".join(lines) + f"\njob {report['job_status']}\n{report['job_log_tail']}"


@pytest.mark.slow
def test_the_study_completes_and_every_check_holds(chaos_study):
    report, _, found = chaos_study
    assert report["job_status"] == "SUCCEEDED", show(report)
    assert found == [], "\n".join(found) + "\n" + show(report)


@pytest.mark.slow
def test_trials_ran_on_both_workers_tagged_with_node_and_device(chaos_study):
    report, plan, _ = chaos_study
    assert set(report["trials_first_trained_on"]) == {"worker-1", "worker-2"}, show(report)
    for key, trial in report["trials"].items():
        assert trial["node"] in ("worker-1", "worker-2") and trial["device"] == "cpu", (key, trial)
    # The head has no CPUs: no trial ever trained there.
    assert "head" not in report["attempts_per_node"]


@pytest.mark.slow
def test_every_trial_exactly_once_in_mlflow_with_the_parents_results(chaos_study):
    report, plan, _ = chaos_study
    assert report["parents"] == 1 and report["parent_status"] == "FINISHED"
    assert report["child_runs"] == report["unique_trial_keys"] == plan.expected_trials, show(report)
    for key, trial in report["trials"].items():
        assert trial["status"] == "FINISHED", (key, trial)
        assert trial["val_steps"] == list(range(1, plan.epochs + 1)), (key, trial)  # each epoch once
    for name in ("fewshot_table.md", "fewshot_table.csv", "learning_curves.png", "f1_vs_k.png"):
        assert f"results/{name}" in report["parent_artifacts"], report["parent_artifacts"]


@pytest.mark.slow
def test_the_killed_nodes_trials_moved_and_resumed_from_their_checkpoints(chaos_study):
    report, plan, _ = chaos_study
    victim = report["victim"]
    assert victim in ("worker-1", "worker-2") and victim not in report["alive_nodes"]
    assert report["victim_trial"] in report["moved_trials"], show(report)
    for key, trial in report["moved_trials"].items():
        placements = trial["placements"].split(",")
        assert placements[0] == f"{victim}:0"
        node, from_epoch = placements[-1].split(":")
        assert node != victim, (key, trial)
        # Each epoch logged once: no epoch it had logged (and checkpointed) was trained again.
        assert trial["val_steps"] == list(range(1, plan.epochs + 1)), (key, trial)
    # The trial the kill was timed on had logged 2 epochs: it resumed from a checkpoint.
    chosen = report["moved_trials"][report["victim_trial"]]
    assert int(chosen["placements"].split(",")[-1].split(":")[1]) >= 1, chosen


@pytest.mark.slow
def test_what_was_logged_while_the_tracking_server_was_down_arrived(chaos_study):
    report, _, _ = chaos_study
    # Calls made while it was down went through once it was back (and every run has every
    # epoch: test_every_trial_exactly_once...). A point measured during the outage keeps that
    # time; usually there is one, but an epoch measured just before the stop waits it out too.
    assert report["tracking_retries_recovered"] >= 1, show(report)


@pytest.mark.slow
def test_no_placement_group_or_resource_is_left_held(chaos_study):
    report, _, _ = chaos_study
    assert set(report["placement_groups"]) <= {"REMOVED"}, report["placement_groups"]
    assert report["resources_held"] == {}, report["resources_held"]


# ---------------------------------------------------------------- the retries alone (fast)


class FakeServer:
    """Raises a transient MLflow error `failures` times, then answers."""

    def __init__(self, failures: int, error=None):
        from mlflow.exceptions import MlflowException

        self.failures, self.calls = failures, 0
        self.error = error or MlflowException("API request to http://x failed with exception Connection refused")

    def __call__(self, uri, value):
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return value


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(tracking_retry.time, "sleep", lambda seconds: None)
    monkeypatch.setenv(tracking_retry.RETRY_ENV, "60")


def test_a_remote_call_is_retried_until_the_server_answers(quick_retries):
    server = FakeServer(failures=4)
    assert tracking_retry.retrying(server)("http://127.0.0.1:5000", "ok") == "ok"
    assert server.calls == 5


def test_a_server_down_past_the_budget_fails_with_that_reason(monkeypatch):
    monkeypatch.setattr(tracking_retry.time, "sleep", lambda seconds: None)
    monkeypatch.setenv(tracking_retry.RETRY_ENV, "0")
    server = FakeServer(failures=100)
    with pytest.raises(tracking_retry.TrackingUnavailable, match="unreachable for 0 s"):
        tracking_retry.retrying(server)("http://127.0.0.1:5000", "ok")


def test_a_refused_request_and_a_local_store_are_not_retried(quick_retries):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    refused = FakeServer(failures=1, error=MlflowException("no such run", error_code=RESOURCE_DOES_NOT_EXIST))
    with pytest.raises(MlflowException, match="no such run"):
        tracking_retry.retrying(refused)("http://127.0.0.1:5000", "ok")
    assert refused.calls == 1
    local = FakeServer(failures=1)
    with pytest.raises(MlflowException):
        tracking_retry.retrying(local)("sqlite:////tmp/x.db", "ok")
    assert local.calls == 1


def test_a_real_unreachable_server_is_waited_for_then_named(monkeypatch, tmp_path):
    monkeypatch.setenv(tracking_retry.RETRY_ENV, "2")
    from experiments.local_cluster.processes import free_ports

    uri = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    with pytest.raises(tracking_retry.TrackingUnavailable, match=uri):
        tracking.log_metrics(uri, "0" * 32, {"val_micro_f1": 0.5}, step=1)


def test_the_slow_fault_applies_to_every_variant_and_seed():
    from study.trial.plugins import TrialInfo
    from tests.support.faults import FaultInjector

    faults = FaultInjector("slow=*:*:0.5")
    assert [(f.kind, f.seconds) for f in faults._of(TrialInfo("finetune", 3, "t", 0))] == [("slow", 0.5)]
    assert FaultInjector("slow=prompt:*:2")._of(TrialInfo("cloce_d", 1, "t", 0)) == []


def test_an_epoch_trained_again_is_logged_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id, parent = tracking.start_parent_run(uri, "e", "study", {}, {})
    run = tracking.child_run(uri, experiment_id, parent, "search/x/K2/t1", {}, {})
    assert tracking.log_epoch_metrics(uri, run, {"val_micro_f1": 0.5, "epochs_done": 1}, step=1)
    # A restart from scratch (no checkpoint yet) trains epoch 1 again: not a second point.
    assert not tracking.log_epoch_metrics(uri, run, {"val_micro_f1": 0.5, "epochs_done": 1}, step=1)
    assert tracking.log_epoch_metrics(uri, run, {"val_micro_f1": 0.6, "epochs_done": 2}, step=2)
    history = tracking.client(uri).get_metric_history(run, "val_micro_f1")
    assert sorted(m.step for m in history) == [1, 2]


def test_a_nodes_processes_are_found_by_its_own_directory_only():
    from experiments.local_cluster.processes import names_directory

    assert names_directory("raylet --temp_dir=/tmp/lcl/worker-1 --x", "/tmp/lcl/worker-1")
    assert names_directory("python /tmp/lcl/worker-1/session_latest/runtime_resources/x.py", "/tmp/lcl/worker-1")
    assert not names_directory("raylet --temp_dir=/tmp/lcl/worker-10 --x", "/tmp/lcl/worker-1")
