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

    Besides the checkpoints Tune lists, every `checkpoint_*` in the trial's own directory goes:
    a trial restored after a killed driver can end without Tune knowing of one it saved
    before the kill (seen once in tests/test_study_e2e.py, under load)."""
    deleted = 0
    for result in grid:
        if result.error is not None or "error" in (result.metrics or {}):
            continue
        checkpoints = [result.checkpoint, *(c for c, _ in (result.best_checkpoints or []))]
        seen = set()
        for checkpoint in checkpoints:
            if checkpoint is not None and checkpoint.path not in seen:
                seen.add(checkpoint.path)
                deleted += discard_checkpoint(checkpoint)
        deleted += discard_left_in(result)
    return deleted


def discard_left_in(result) -> int:
    """Delete the `checkpoint_*` directories left in a finished trial's local directory."""
    trial_dir = getattr(result, "path", None)
    if not trial_dir or not on_local_disk(result):
        return 0
    left = [path for path in Path(trial_dir).glob("checkpoint_*") if path.is_dir()]
    for path in left:
        shutil.rmtree(path, ignore_errors=True)
    return len(left)
