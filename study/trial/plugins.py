"""What a caller may plug into every trial of a study: an object the trial's worker calls at two
points, as Ray Tune takes callbacks (its `FailureInjectorCallback` is passed by a test, never built
into a trainable). The study command plugs in nothing; the reliability tests and the chaos demo
plug in injected faults (tests/support/faults.py). A plugin travels to the trial processes pickled, so
its class must be importable there."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrialInfo:
    """The trial a plugin is called in: its variant and seed, its run name, this worker's rank."""

    variant: str
    seed: int
    name: str
    rank: int


class TrialPlugin:
    """Both calls do nothing unless a subclass says otherwise."""

    def prepare_model(self, model, trial: TrialInfo):
        """Before training: return the model to train (the same one, or wrapped)."""
        return model

    def before_report(self, epoch: int, trial: TrialInfo) -> None:
        """When `epoch` is trained, before it is reported (and checkpointed)."""
