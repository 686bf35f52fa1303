"""A real study with every cell at once (study/driver/pool.py): the study-wide limit holds, cells
overlap, a cell on another cell's lr takes exactly the lr that cell chose (every one of its
trials trains at it; it still searches the rest), and no cell's trials run under another
cell's name (Tune's trainable registry is process-wide)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


@pytest.mark.slow
def test_cells_share_one_pool_under_the_study_limit(tiny_semeval_dir, tiny_model_dir, tmp_path):
    from mlflow.tracking import MlflowClient

    db, study_dir = tmp_path / "mlflow.db", tmp_path / "study"
    command = [
        sys.executable, str(REPO / "study" / "run_fewshot_grid.py"), "--data-dir", str(tiny_semeval_dir),
        "--model", str(tiny_model_dir), "--variants", "finetune", "prompt_ki", "cloce_s", "--ks", "2",
        "--seeds", "1", "2", "--num-samples", "2", "--epochs", "1", "--study-dir", str(study_dir),
        "--tracking-uri", f"sqlite:///{db}", "--num-cpus", "3", "--max-running-trials", "2",
        "--set", "train.num_threads=1", "--set", "search.asha=false", "--set", 'spaces.cloce_s.lr="prompt_ki"',
    ]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("cloce-quick")
    children = [r for r in client.search_runs([experiment.experiment_id], max_results=100)
                if "mlflow.parentRunId" in r.data.tags]
    # 3 cells x (2 search trials + seed 2); seed 1 reuses the best search trial.
    assert len(children) == 9 and all(r.info.status == "FINISHED" for r in children)
    for run in children:  # each trial trained the variant its cell is for
        assert run.data.tags["cloce.trial_key"].split("/")[1] == run.data.tags["variant"] == run.data.params["variant"]
    spans = [(r.info.start_time, r.info.end_time) for r in children]
    assert most_at_once(spans) <= 2  # --max-running-trials, though 3 CPUs could hold 3
    by_cell = {}
    for run in children:
        by_cell.setdefault(run.data.tags["variant"], []).append((run.info.start_time, run.info.end_time))
    # finetune and prompt_ki ran side by side (cells at once), not one after the other.
    assert min(end for _, end in by_cell["finetune"]) > min(start for start, _ in by_cell["prompt_ki"])
    assert min(end for _, end in by_cell["prompt_ki"]) > min(start for start, _ in by_cell["finetune"])

    chosen = {cell: json.loads((study_dir / "cells" / f"{cell}-K2.json").read_text())["best_config"]
              for cell in ("prompt_ki", "cloce_s")}
    assert chosen["cloce_s"]["lr"] == chosen["prompt_ki"]["lr"]
    prompt_lrs = {float(r.data.params["lr"]) for r in children
                  if (r.data.tags["variant"], r.data.tags["stage"]) == ("prompt_ki", "search")}
    assert len(prompt_lrs) == 2 and chosen["prompt_ki"]["lr"] in prompt_lrs
    # Every cloce_s trial, search and final, trained at that lr; cl_lr and margin are still searched.
    cloce = [r for r in children if r.data.tags["variant"] == "cloce_s"]
    assert len(cloce) == 3 and {float(r.data.params["lr"]) for r in cloce} == {chosen["prompt_ki"]["lr"]}
    assert len({r.data.params["cl_lr"] for r in cloce if r.data.tags["stage"] == "search"}) == 2
    # cloce_s searched only after prompt_ki's search had chosen: its first trial starts after
    # prompt_ki's search trials ended.
    prompt_search_end = max(r.info.end_time for r in children
                            if r.data.tags["variant"] == "prompt_ki" and r.data.tags["stage"] == "search")
    assert min(start for start, _ in by_cell["cloce_s"]) >= prompt_search_end
