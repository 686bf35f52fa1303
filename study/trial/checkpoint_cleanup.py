"""Deleting the checkpoints of trials that finished.

A checkpoint exists to resume an interrupted trial; once the trial's record is written (its
Tune result, MLflow run and results-file line) nothing reads it again. Each one holds the
weights and optimiser state (260 MiB for MiniLM, benchmarks/readings.md; ~4 GB for roberta-large), so keeping them
fills a disk within one study: the default study's 40 trials left ~16 GB (2026-11-25, when a
checkpoint held ~0.4 GB).
"""
from __future__ import annotations

import shutil
from pathlib import Path


def on_local_disk(stored) -> bool:
    """A Ray `Checkpoint` or `Result` whose files lie on this machine's file system."""
    filesystem = getattr(stored, "filesystem", None)
    return filesystem is None or getattr(filesystem, "type_name", "local") == "local"


def discard_checkpoint(checkpoint) -> bool:
    """Delete one Ray `Checkpoint` when it lies on the local file system; True if it did.

    Remote storage (s3://, gs://) is left to its own retention rules."""
    if checkpoint is None or not on_local_disk(checkpoint):
        return False
    path = Path(checkpoint.path)
    if not path.is_dir():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def discard_finished_checkpoints(grid) -> int:
    """Delete the checkpoints of the grid's trials that ended without an error; the failed
    ones keep theirs, for a retry. Returns how many were deleted.

    Besides the checkpoints Tune lists, every `checkpoint_*` in the experiment's trial
    directories goes, but a failed trial's: a driver killed mid-trial leaves a trial whose
    state was never saved, which the restored cell runs again as a new trial, and a restored
    trial can end without Tune knowing of a checkpoint it saved before the kill (both seen in
    tests/test_study_e2e.py, under load). Nothing resumes from those."""
    deleted, failed_dirs, experiment_dirs = 0, set(), set()
    if getattr(grid, "experiment_path", None) and on_local_disk(grid):
        experiment_dirs.add(Path(grid.experiment_path))
    for result in grid:
        trial_dir = getattr(result, "path", None)
        if trial_dir and on_local_disk(result):
            experiment_dirs.add(Path(trial_dir).parent)
        if result.error is not None or "error" in (result.metrics or {}):
            if trial_dir:
                failed_dirs.add(Path(trial_dir))
            continue
        checkpoints = [result.checkpoint, *(c for c, _ in (result.best_checkpoints or []))]
        seen = set()
        for checkpoint in checkpoints:
            if checkpoint is not None and checkpoint.path not in seen:
                seen.add(checkpoint.path)
                deleted += discard_checkpoint(checkpoint)
    left = [path for directory in experiment_dirs for path in directory.glob("*/checkpoint_*")
            if path.is_dir() and path.parent not in failed_dirs]
    for path in left:
        shutil.rmtree(path, ignore_errors=True)
    return deleted + len(left)
