"""One real study, two cells, with ASHA on: finetune's search trials run one after another
(search.max_concurrent_trials = 1, so ASHA's decisions follow from the trial order), and
every search trial of prompt raises (CLOCE_FAULTS) so that whole cell fails.
  - the study completes; prompt's rows are marked failed, finetune's are whole;
  - ASHA stops exactly the trials whose first-epoch val is below its rung's cutoff, and the
    MLflow runs they leave are closed (KILLED, tagged stopped_early), none left RUNNING.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.test_study_e2e import FAULTY_STUDY, child_runs, faulty_study_env

pytestmark = pytest.mark.slow  # a whole study

SEARCH_TRIALS = 3


@pytest.fixture(scope="module")
def asha_study(tiny_semeval_dir, tiny_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("asha_study")
    db, study_dir, results = tmp / "mlflow.db", tmp / "study", tmp / "results.jsonl"
    command = [
        *FAULTY_STUDY, "--data-dir", str(tiny_semeval_dir), "--model", str(tiny_model_dir),
        "--variants", "finetune", "prompt", "--ks", "2", "--seeds", "1", "2", "--num-samples", str(SEARCH_TRIALS),
        "--epochs", "2", "--study-dir", str(study_dir), "--tracking-uri", f"sqlite:///{db}", "--num-cpus", "2",
        "--results-file", str(results), "--set", "search.asha=true", "--set", "search.grace_period=1",
        "--set", "search.max_concurrent_trials=1", "--set", "resources.max_failures=0",
        "--set", "train.num_threads=1", "--set", "train.bf16=false",
        # A wide lr range: the untrained tiny model's first-epoch val differs between trials
        # (with every trial tied, ASHA has nothing to stop).
        "--set", "spaces.finetune.lr=[1e-5, 1e-1]",
    ]
    env = faulty_study_env("raise=prompt:*")
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    client, parents, children = child_runs(db)
    records = [json.loads(line) for line in results.read_text().splitlines()]
    return SimpleNamespace(done=done, client=client, parents=parents, children=children, records=records,
                           study_dir=study_dir, tmp=tmp)


def runs_of(study, variant: str, stage: str) -> list:
    return [r for r in study.children if (r.data.tags["variant"], r.data.tags["stage"]) == (variant, stage)]


def test_a_cell_whose_every_search_trial_fails_is_marked_and_the_study_completes(asha_study):
    study = asha_study
    assert len(study.parents) == 1 and study.parents[0].info.status == "FINISHED"
    assert "[error] prompt K=2: every search trial of prompt K=2 failed" in study.done.stdout
    assert "2 of 4 trials failed (prompt K=2 seed 1; prompt K=2 seed 2)" in study.done.stdout
    searched = runs_of(study, "prompt", "search")
    assert len(searched) == SEARCH_TRIALS
    assert all(r.info.status == "FAILED" and "injected failure" in r.data.tags["error"] for r in searched)
    assert runs_of(study, "prompt", "final") == []  # nothing chosen, nothing trained on the seeds
    # Not written as finished: --resume runs the cell again.
    assert not (study.study_dir / "cells" / "prompt-K2.json").exists()
    assert (study.study_dir / "cells" / "finetune-K2.json").exists()

    parent = study.parents[0].info.run_id
    table = Path(study.client.download_artifacts(parent, "results/fewshot_table.csv", str(study.tmp)))
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO(table.read_text()))}
    assert rows["prompt"]["K=2 seeds"] == "0/2" and rows["prompt"]["K=2 micro-F1"] == "missing"
    assert rows["finetune"]["K=2 seeds"] == "2/2" and rows["finetune"]["K=2 micro-F1"] != "missing"
    assert all(r.info.status == "FINISHED" for r in runs_of(study, "finetune", "final"))


def first_epoch_val(record: dict) -> float:
    # A stopped trial's val is its best so far: the one epoch it trained.
    return record["history"][0]["val_micro_f1"] if record["status"] == "FINISHED" else record["val_micro_f1"]


def test_asha_stops_the_trials_below_its_rung_and_their_runs_are_closed(asha_study):
    study = asha_study
    searched = [r for r in study.records if (r["stage"], r["variant"]) == ("search", "finetune")]
    assert len(searched) == SEARCH_TRIALS and {r["status"] for r in searched} <= {"FINISHED", "STOPPED"}
    # One rung (epoch 1 of 2, reduction factor 4): a trial stops there when its val is below
    # the 75th percentile of the trials that reached it before (one at a time: the record order).
    vals = [first_epoch_val(r) for r in searched]
    expected = ["STOPPED" if i and vals[i] < np.nanpercentile(vals[:i], 75) else "FINISHED" for i in range(len(vals))]
    assert [r["status"] for r in searched] == expected, vals
    assert "STOPPED" in expected, f"no trial was below the rung (first-epoch vals {vals}): nothing tested"

    # A stopped trial's record has no trial key (that comes with the final report): its lr finds its run.
    runs = {float(r.data.params["lr"]): r for r in runs_of(study, "finetune", "search")}
    assert len(runs) == SEARCH_TRIALS
    for record in searched:
        run = runs[record["config"]["lr"]]
        steps = sorted(m.step for m in study.client.get_metric_history(run.info.run_id, "val_micro_f1"))
        if record["status"] == "STOPPED":
            assert (run.info.status, run.data.tags.get("stopped_early"), steps) == ("KILLED", "true", [1])
        else:
            assert (run.info.status, run.data.tags.get("stopped_early"), steps) == ("FINISHED", None, [1, 2])
    assert all(r.info.status != "RUNNING" for r in study.children)
    # A stopped trial is never chosen: the best finished one is, and seed 1 reuses its run.
    best = json.loads((study.study_dir / "cells" / "finetune-K2.json").read_text())["best_config"]
    finished = [r for r in searched if r["status"] == "FINISHED"]
    assert best == max(finished, key=lambda r: r["val_micro_f1"])["config"]
