"""Reliability of a running study (issue: failed trials and crashes lose nothing).

One tiny study with three faults injected through CLOCE_FAULTS (tests/support/faults.py,
plugged into the study by tests/support/faulty_study.py), run twice: in Ray Train's local
mode (the default study's: the loop runs in the Tune trial's process, Tune retries it) and
with one Ray Train worker per trial (Ray Train retries it):
  finetune seed 1: the process training it is SIGKILLed once epoch 2 is trained, before
                   reporting it -> restarts from epoch 1's checkpoint and finishes all 3
                   epochs, each logged once;
  prompt, every seed: the loss turns NaN -> every trial FAILED with the reason, no retry;
  one trial raises -> FAILED with error.txt; the rest and the tables complete.
Local mode runs finetune and prompt on seeds 1-2, finetune seed 2 raising beside the killed
and resumed seed 1: two cells, as a cell's trials share one process in local mode (~9 CPU s
to start, each process's CPU read from /proc during the run; the kill and the raising trial's
retry start new ones). One worker per trial runs
seed 1 alone, with cloce_s to raise: each fault takes Ray Train's path once, in 3 of the 7 trials.
"""
from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.test_study_e2e import FAULTY_STUDY, child_runs, faulty_study_env

pytestmark = pytest.mark.slow  # two whole studies

# workers per trial, seeds, variants, the (variant, seed) whose trial raises
MODES = {"local_mode": (0, (1, 2), ("finetune", "prompt"), ("finetune", 2)),
         "one_worker": (1, (1,), ("finetune", "prompt", "cloce_s"), ("cloce_s", 1))}


@pytest.fixture(scope="module", params=list(MODES))
def faulty_study(request, tiny_semeval_dir, tiny_model_dir, tmp_path_factory):
    workers, seeds, variants, raising = MODES[request.param]
    tmp = tmp_path_factory.mktemp("faulty_study")
    db, study_dir = tmp / "mlflow.db", tmp / "study"
    command = [
        *FAULTY_STUDY, "--data-dir", str(tiny_semeval_dir), "--model", str(tiny_model_dir),
        "--variants", *variants, "--ks", "2", "--seeds", *map(str, seeds), "--epochs", "3",
        "--study-dir", str(study_dir), "--tracking-uri", f"sqlite:///{db}", "--num-cpus", "2",
        "--set", "search.enabled=false", "--set", "train.num_threads=1",
        "--set", f"resources.workers_per_trial={workers}",
        # Every epoch: the kill must find epoch 1's checkpoint (the interval's bound: test_trial_fixed_cost.py).
        "--set", "resources.checkpoint_every_s=0",
    ]
    faults = f"kill=finetune:1:2;nan=prompt:*;raise={raising[0]}:{raising[1]}"
    env = faulty_study_env(faults, tmp)
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env, cwd=tmp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client, parents, children = child_runs(db)
    runs = {(r.data.tags["variant"], int(r.data.tags["seed"])): r for r in children}
    return SimpleNamespace(done=done, client=client, parents=parents, runs=runs, tmp=tmp, seeds=seeds,
                           variants=variants, raising=raising)


def test_the_study_completes_despite_every_fault(faulty_study):
    study = faulty_study  # it exited 0: the fixture checks
    assert len(study.parents) == 1 and study.parents[0].info.status == "FINISHED"
    trials = len(study.variants) * len(study.seeds)
    assert len(study.runs) == trials
    # every prompt trial (NaN) and the raising one
    assert f"{len(study.seeds) + 1} of {trials} trials failed" in study.done.stdout


def test_a_killed_worker_resumes_from_its_last_epoch_checkpoint(faulty_study):
    client, runs = faulty_study.client, faulty_study.runs
    assert (faulty_study.tmp / "cloce-fault-final-finetune-K2-seed1-kill2").exists(), "the worker was never killed"
    run = runs[("finetune", 1)]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["epochs_done"] == 3
    # Restarted from scratch, epoch 1 would be logged twice; resumed, each epoch once.
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_micro_f1"))
    assert steps == [1, 2, 3]
    assert all(runs[("finetune", seed)].info.status == "FINISHED" for seed in faulty_study.seeds
               if ("finetune", seed) != faulty_study.raising)


def test_a_nan_loss_fails_the_trial_with_its_reason(faulty_study):
    client = faulty_study.client
    for seed in faulty_study.seeds:
        run = faulty_study.runs[("prompt", seed)]
        assert run.info.status == "FAILED"
        assert "non-finite loss" in run.data.tags["error"]
        assert [a.path for a in client.list_artifacts(run.info.run_id) if a.path == "error.txt"]


def test_a_raising_trial_is_failed_with_its_error_and_the_rest_completes(faulty_study):
    client, runs = faulty_study.client, faulty_study.runs
    failed = runs[faulty_study.raising]
    assert failed.info.status == "FAILED"
    error = Path(client.download_artifacts(failed.info.run_id, "error.txt", str(faulty_study.tmp)))
    assert "injected failure" in error.read_text()
    variant, seed = faulty_study.raising
    others = [s for s in faulty_study.seeds if s != seed]  # local mode: the killed and resumed finetune seed 1
    assert all(runs[(variant, other)].info.status == "FINISHED" for other in others)


def test_the_table_marks_the_missing_cells(faulty_study):
    client, parent, n = faulty_study.client, faulty_study.parents[0], len(faulty_study.seeds)
    table = Path(client.download_artifacts(parent.info.run_id, "results/fewshot_table.csv", str(faulty_study.tmp)))
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(table.read_text()))}
    assert sorted(rows) == sorted(faulty_study.variants)
    assert rows["prompt"]["K=2 seeds"] == f"0/{n}" and rows["prompt"]["K=2 micro-F1"] == "missing"
    raising = faulty_study.raising[0]
    assert rows[raising]["K=2 seeds"] == f"{n - 1}/{n}"
    assert ("(1 seed)" if n == 2 else "missing") in rows[raising]["K=2 micro-F1"]
    for variant in set(faulty_study.variants) - {"prompt", raising}:  # one worker: finetune, killed and resumed
        assert rows[variant]["K=2 seeds"] == f"{n}/{n}"
    assert "| prompt |" in faulty_study.done.stdout
