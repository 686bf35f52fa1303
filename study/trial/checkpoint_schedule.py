"""Which epochs a trial checkpoints (`resources.checkpoint_every_s`).

A checkpoint of MiniLM is 260 MiB (weights + AdamW moments; benchmarks/readings.md, 5/5c) written, then copied into the
trial's storage: for a trial of a few short epochs that is much of its fixed cost. With an
interval, a trial checkpoints
- its last epoch (what resume needs then is only the best weights: `cloce.state.final_state`),
- and an earlier epoch only when waiting for the next one would leave more than the interval
  of training unsaved (the next epoch taken to last as long as this one),
so a trial killed at any moment loses at most the interval (or one epoch, where a single
epoch is longer than the interval: epochs are the smallest unit a run resumes from).
"""
from __future__ import annotations

import time
from typing import Callable


class CheckpointSchedule:
    def __init__(self, every_s: float, epochs: int, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self.epochs = epochs
        self.clock = clock
        self.saved_at = clock()  # this attempt's start: what came before it is in its resume state

    def due(self, epoch: int, epoch_seconds: float) -> bool:
        """Whether to checkpoint now, `epoch` (1-based) having just taken `epoch_seconds`."""
        now = self.clock()
        unsaved_by_next = now - self.saved_at + epoch_seconds
        if self.every_s <= 0 or epoch >= self.epochs or unsaved_by_next > self.every_s:
            self.saved_at = now
            return True
        return False
