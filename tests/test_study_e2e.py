"""A tiny two-stage study end to end: Ray Tune + Optuna + TorchTrainer trials + MLflow."""
from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "study" / "run_fewshot_grid.py"


def study_command(data_dir, model_dir, study_dir, db, *extra: str) -> list[str]:
    return [
        sys.executable, str(SCRIPT), "--data-dir", str(data_dir), "--model", str(model_dir),
        "--variants", "prompt_ki", "cloce_s", "--ks", "2", "--seeds", "1", "2", "--num-samples", "2",
        "--epochs", "2", "--study-dir", str(study_dir), "--tracking-uri", f"sqlite:///{db}",
        "--set", "search.asha=false", "--set", "train.num_threads=1", "--num-cpus", "2", *extra,
    ]


def study_env() -> dict:
    return os.environ | {"HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}


# The study command with CLOCE_FAULTS's faults plugged in (tests/support/faulty_study.py): tests only.
FAULTY_STUDY = [sys.executable, "-m", "tests.support.faulty_study"]


def faulty_study_env(faults: str, faults_dir: Path | None = None) -> dict:
    """study_env, with the faults and the repository importable (tests/support is not installed)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return study_env() | {"CLOCE_FAULTS": faults, "PYTHONPATH": path} | (
        {"CLOCE_FAULTS_DIR": str(faults_dir)} if faults_dir else {})


def child_runs(db: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("cloce-quick")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def run_until_first_cell_then_kill(command, study_dir: Path, cwd: Path) -> None:
    """Start the study, and kill its driver (process group) once the first cell is finished."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=study_env(),
                               cwd=cwd, start_new_session=True)
    ledger = study_dir / "cells" / "prompt_ki-K2.json"
    deadline = time.monotonic() + 900
    while not ledger.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    assert ledger.exists(), "the first cell never finished"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


@pytest.mark.slow
def test_tiny_two_stage_study_killed_then_resumed(tiny_semeval_dir, tiny_model_dir, tmp_path):
    """2 variants x K=2 x seeds 1-2, 2 search trials each; the driver is killed after the
    first cell and `--resume` finishes the study without re-running or duplicating a trial."""
    db, study_dir = tmp_path / "mlflow.db", tmp_path / "study"
    command = study_command(tiny_semeval_dir, tiny_model_dir, study_dir, db)
    run_until_first_cell_then_kill(command, study_dir, tmp_path)
    _, _, before = child_runs(db)
    first_cell = {r.data.tags["cloce.trial_key"]: r.info.run_id for r in before if "/prompt_ki/" in r.data.tags["cloce.trial_key"]}
    assert len(first_cell) == 3

    done = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=1200, env=study_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[resume] prompt_ki K=2: already finished, not re-run" in done.stdout
    assert "| prompt_ki |" in done.stdout and "| cloce_s |" in done.stdout

    client, parents, children = child_runs(db)
    assert len(parents) == 1
    # Per cell: 2 search trials + 1 final trial (seed 2; seed 1 is the best search run, reused).
    # A kill while Tune wrote cloce_s's state leaves it unreadable (seen once): that cell then
    # starts again, and its search trials that had finished run again, as new trials.
    torn = "Tune's saved state is unreadable" in done.stdout
    again = [r for r in before if r.data.tags["cloce.trial_key"].startswith("search/cloce_s/")] if torn else []
    keys = sorted(r.data.tags["cloce.trial_key"] for r in children)
    assert len(keys) == 6 + len(again) and len(set(keys)) == len(keys), (keys, done.stdout[-4000:])
    assert sum(k.startswith("final/") for k in keys) == 2
    assert {k: v for k, v in first_cell.items()} == {
        r.data.tags["cloce.trial_key"]: r.info.run_id for r in children if "/prompt_ki/" in r.data.tags["cloce.trial_key"]}
    for run in children:
        assert run.info.status == "FINISHED", (str({k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}), done.stdout[-5000:])
        assert {"variant", "k", "seed", "stage"} <= set(run.data.tags)
        # What changes numbers: the workers asked for, and what really ran (local mode: one).
        assert (run.data.params["workers"], run.data.tags["world_size"]) == ("0", "1")
        assert run.data.tags["bf16_active"] in ("0", "1")
        history = client.get_metric_history(run.info.run_id, "val_micro_f1")
        assert sorted(m.step for m in history) == [1, 2]
        assert "test_micro_f1" in run.data.metrics
        assert run.data.metrics["sentence_markers_active"] == 1.0  # unset, SemEval's directed labels decide

    parent = parents[0]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "results")}
    assert {"results/fewshot_table.md", "results/fewshot_table.csv", "results/learning_curves.png",
            "results/f1_vs_k.png", "results/kshot_ids.json"} <= artifacts
    table = Path(client.download_artifacts(parent.info.run_id, "results/fewshot_table.csv", str(tmp_path)))
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert [r["variant"] for r in rows] == ["prompt_ki", "cloce_s"]
    assert all(r["K=2 seeds"] == "2/2" for r in rows), (rows, done.stdout[-6000:])
    # Every trial finished: none of their checkpoints (weights + optimiser state) is left.
    assert not [p for p in study_dir.rglob("checkpoint_*") if p.is_dir()]
