"""Reliability cases 9 and 10 for real, on the default backbone (MiniLM) and SemEval:

  9.  a Ray Train worker is SIGKILLed when epoch 2 of one trial is trained (CLOCE_FAULTS, tests/support/faults.py,
      plugged in by tests/support/faulty_study.py):
      the trial restarts from its epoch-1 checkpoint and ends with both epochs, each logged once;
  10. the study driver (and its local Ray) is SIGKILLed once the first cell is finished:
      `--resume` finishes the study; no finished trial re-runs; one MLflow run per trial.

    python -m experiments.kill_and_resume     # ~10 minutes on 2 cores; writes results/kill_and_resume.md

The counts of MLflow runs before and after the resume go to the results file.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results" / "kill_and_resume.md"
FAULTS = "kill=finetune:2:2"  # the final-stage trial of finetune, seed 2, dies once epoch 2 is trained, unreported


def command(study_dir: Path, db: Path) -> list[str]:
    return [
        sys.executable, "-m", "tests.support.faulty_study", "--variants", "finetune", "cloce_s",
        "--ks", "8", "--seeds", "1", "2", "--num-samples", "2", "--epochs", "2",
        "--set", "train.test_sample=300", "--set", "search.asha=false",
        "--study-dir", str(study_dir), "--tracking-uri", f"sqlite:///{db}",
    ]


def runs(db: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("cloce-quick")
    return client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


def describe(all_runs: list) -> dict:
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    keys = Counter(r.data.tags["cloce.trial_key"] for r in children)
    return {
        "parents": len(all_runs) - len(children),
        "children": len(children),
        "duplicated trial keys": sum(1 for n in keys.values() if n > 1),
        "by status": dict(Counter(r.info.status for r in children)),
    }


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="cloce-kill-"))
    study_dir, db = work / "study", work / "mlflow.db"
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))  # tests/support is not installed
    env = os.environ | {"CLOCE_FAULTS": FAULTS, "CLOCE_FAULTS_DIR": str(work), "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    started = time.perf_counter()
    process = subprocess.Popen(command(study_dir, db), cwd=work, env=env, start_new_session=True,
                               stdout=open(work / "first.log", "w"), stderr=subprocess.STDOUT)
    ledger = study_dir / "cells" / "finetune-K8.json"
    while not ledger.exists() and process.poll() is None:
        time.sleep(1)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and the local Ray it started
    process.wait()
    subprocess.run(["ray", "stop", "--force"], capture_output=True)
    killed_at = time.perf_counter() - started
    before = runs(db)
    finished_before = {r.data.tags["cloce.trial_key"]: r.info.run_id for r in before
                       if "cloce.trial_key" in r.data.tags and r.info.status == "FINISHED"}

    resumed = subprocess.run(command(study_dir, db) + ["--resume"], cwd=work, env=env, capture_output=True, text=True)
    total = time.perf_counter() - started
    after = runs(db)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    by_key = {r.data.tags["cloce.trial_key"]: r for r in after if "cloce.trial_key" in r.data.tags}
    killed = by_key.get("final/finetune/K8/seed2")
    steps = sorted(m.step for m in client.get_metric_history(killed.info.run_id, "val_micro_f1")) if killed else []
    untouched = all(by_key[k].info.run_id == v and by_key[k].info.status == "FINISHED" for k, v in finished_before.items())
    lines = [
        "# Kill tests on the default backbone (reliability cases 9 and 10)",
        "",
        f"Command: `python -m experiments.kill_and_resume` (study: finetune + cloce_s, K=8, seeds 1-2, 2 search "
        f"trials, 2 epochs, 300 test sentences; CLOCE_FAULTS=`{FAULTS}`); {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPUs.",
        "",
        f"- Driver SIGKILLed {killed_at:.0f} s in, once cell finetune K=8 was finished; resumed with `--resume` "
        f"(exit code {resumed.returncode}); {total:.0f} s in all.",
        f"- MLflow before the resume: {describe(before)}",
        f"- MLflow after the resume: {describe(after)}",
        f"- Runs finished before the kill kept their run id and status after the resume: {untouched}",
        f"- Case 9, final/finetune/K8/seed2 (worker SIGKILLed once epoch 2 was trained, before its report): status "
        f"{killed.info.status if killed else 'absent'}, epochs_done "
        f"{killed.data.metrics.get('epochs_done') if killed else None}, val_micro_f1 logged at steps {steps} "
        f"(a restart from scratch would log step 1 twice, a resume from epoch 1 logs each step once); worker killed: "
        f"{(work / 'cloce-fault-final-finetune-K8-seed2-kill2').exists()}",
        "",
        "Table printed by the resumed study:",
        "",
        *[line for line in resumed.stdout.splitlines() if line.startswith("|")],
        "",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if resumed.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
