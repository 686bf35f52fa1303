"""Reliability of a running study (issue: failed trials and crashes lose nothing).

One tiny study, three variants, each with a fault injected through CLOCE_FAULTS (study/faults.py),
run twice: in Ray Train's local mode (the default study's: the loop runs in the Tune trial's
process, Tune retries it) and with one Ray Train worker per trial (Ray Train retries it):
  finetune seed 1: the process training it is SIGKILLed once epoch 2 is trained, before
                   reporting it -> restarts from epoch 1's checkpoint and finishes all 3
                   epochs, each logged once;
  prompt, every seed: the loss turns NaN -> both trials FAILED with the reason, no retry;
  cloce_s seed 2: the trial raises -> FAILED with error.txt; seed 1 and the tables complete.
"""
from __future__ import annotations

import csv
import io
import subprocess
from pathlib import Path

import pytest

from tests.test_study_e2e import SCRIPT, child_runs, study_env

FAULTS = "kill=finetune:1:2;nan=prompt:*;raise=cloce_s:2"


@pytest.fixture(scope="module", params=[0, 1], ids=["local_mode", "one_worker"])
def faulty_study(request, tiny_semeval_dir, tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faulty_study")
    db, study_dir = tmp / "mlflow.db", tmp / "study"
    command = [
        "python", str(SCRIPT), "--data-dir", str(tiny_semeval_dir), "--model", str(tiny_model_dir),
        "--variants", "finetune", "prompt", "cloce_s", "--ks", "2", "--seeds", "1", "2", "--epochs", "3",
        "--study-dir", str(study_dir), "--tracking-uri", f"sqlite:///{db}", "--num-cpus", "2",
        "--set", "search.enabled=false", "--set", "train.num_threads=1",
        "--set", f"resources.workers_per_trial={request.param}",
    ]
    env = study_env() | {"CLOCE_FAULTS": FAULTS, "CLOCE_FAULTS_DIR": str(tmp)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, env=env, cwd=tmp)
    client, parents, children = child_runs(db)
    runs = {(r.data.tags["variant"], int(r.data.tags["seed"])): r for r in children}
    return done, client, parents, runs, tmp


def test_the_study_completes_despite_every_fault(faulty_study):
    done, _, parents, runs, _ = faulty_study
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(runs) == 6
    assert "3 of 6 trials failed" in done.stdout


def test_a_killed_worker_resumes_from_its_last_epoch_checkpoint(faulty_study):
    _, client, _, runs, tmp = faulty_study
    assert (tmp / "cloce-fault-final-finetune-K2-seed1-kill2").exists(), "the worker was never killed"
    run = runs[("finetune", 1)]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["epochs_done"] == 3
    # Restarted from scratch, epoch 1 would be logged twice; resumed, each epoch once.
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_micro_f1"))
    assert steps == [1, 2, 3]
    assert runs[("finetune", 2)].info.status == "FINISHED"


def test_a_nan_loss_fails_the_trial_with_its_reason(faulty_study):
    _, client, _, runs, _ = faulty_study
    for seed in (1, 2):
        run = runs[("prompt", seed)]
        assert run.info.status == "FAILED"
        assert "non-finite loss" in run.data.tags["error"]
        assert [a.path for a in client.list_artifacts(run.info.run_id) if a.path == "error.txt"]


def test_a_raising_trial_is_failed_with_its_error_and_the_rest_completes(faulty_study):
    _, client, _, runs, tmp = faulty_study
    failed = runs[("cloce_s", 2)]
    assert failed.info.status == "FAILED"
    error = Path(client.download_artifacts(failed.info.run_id, "error.txt", str(tmp)))
    assert "injected failure" in error.read_text()
    assert runs[("cloce_s", 1)].info.status == "FINISHED"


def test_the_table_marks_the_missing_cells(faulty_study):
    done, client, parents, _, tmp = faulty_study
    table = Path(client.download_artifacts(parents[0].info.run_id, "results/fewshot_table.csv", str(tmp)))
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(table.read_text()))}
    assert rows["finetune"]["K=2 seeds"] == "2/2"
    assert rows["prompt"]["K=2 seeds"] == "0/2" and rows["prompt"]["K=2 micro-F1"] == "missing"
    assert rows["cloce_s"]["K=2 seeds"] == "1/2" and "(1 seed)" in rows["cloce_s"]["K=2 micro-F1"]
    assert "| prompt |" in done.stdout
