"""Injected faults: how the reliability tests (and a chaos run on a real cluster) make a trial
die, raise or diverge on purpose, through the same code paths a real fault takes. They are a
`TrialPlugin` (study/trial/plugins.py) the caller passes to the study, never part of it:
`python -m tests.support.faulty_study ARGS` is the study command with `CLOCE_FAULTS`'s faults plugged in.

`CLOCE_FAULTS` (environment of that command) holds `;`-separated faults:

    kill=VARIANT:SEED:EPOCH   the rank-0 worker SIGKILLs itself once EPOCH is trained, before
                              reporting it (the epoch's work is lost), once per trial: Ray Train
                              must restart it from the checkpoint of EPOCH - 1
    raise=VARIANT:SEED        the trial's workers raise before training, on every attempt
    nan=VARIANT:SEED          the model's outputs turn NaN: a real non-finite loss
    slow=VARIANT:SEED:SECONDS every epoch of the rank-0 worker takes SECONDS longer (slept
                              before its report): long enough trials for a chaos run to
                              kill a node or stop the tracking server mid-trial

VARIANT and SEED may be `*` (every variant, every seed). `kill` remembers that it fired in
`CLOCE_FAULTS_DIR` (default: the system temp dir), so the restarted worker trains on.
"""
from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from study.trial.plugins import TrialInfo, TrialPlugin

ENV, DIR_ENV = "CLOCE_FAULTS", "CLOCE_FAULTS_DIR"


class InjectedFault(RuntimeError):
    pass


@dataclass(frozen=True)
class Fault:
    kind: str  # kill / raise / nan / slow
    variant: str
    seed: str  # a number or "*"
    epoch: int = 0  # kill only
    seconds: float = 0.0  # slow only

    def applies(self, variant: str, seed: int) -> bool:
        return self.variant in ("*", variant) and self.seed in ("*", str(seed))


def parse_faults(text: str) -> list[Fault]:
    faults = []
    for item in filter(None, (part.strip() for part in text.split(";"))):
        kind, _, spec = item.partition("=")
        fields = spec.split(":")
        expected = 3 if kind in ("kill", "slow") else 2
        if kind not in ("kill", "raise", "nan", "slow") or len(fields) != expected or not all(fields):
            raise ValueError(f"{ENV}: cannot read {item!r}; expected kill=VARIANT:SEED:EPOCH, "
                             "raise=VARIANT:SEED, nan=VARIANT:SEED or slow=VARIANT:SEED:SECONDS")
        faults.append(Fault(kind, fields[0], fields[1], int(fields[2]) if kind == "kill" else 0,
                            float(fields[2]) if kind == "slow" else 0.0))
    return faults


def _nan(output):
    """Every tensor of a forward's output as NaN; a model may return (scores, auxiliary loss or None)."""
    if isinstance(output, tuple):
        return tuple(_nan(part) for part in output)
    return None if output is None else output * float("nan")


class FaultInjector(TrialPlugin):
    """The faults of a study, applied in each trial they name (variant, seed)."""

    def __init__(self, text: str, marker_dir: str | Path | None = None):
        self.faults = parse_faults(text)
        self.marker_dir = str(marker_dir or tempfile.gettempdir())

    @classmethod
    def from_env(cls) -> "FaultInjector":
        return cls(os.environ.get(ENV, ""), os.environ.get(DIR_ENV))

    def _of(self, trial: TrialInfo) -> list[Fault]:
        return [f for f in self.faults if f.applies(trial.variant, trial.seed)]

    def prepare_model(self, model, trial: TrialInfo):
        """Before training: raise, or make every forward output NaN."""
        for fault in self._of(trial):
            if fault.kind == "raise":
                raise InjectedFault(f"injected failure ({ENV}) in trial {trial.name}")
            if fault.kind == "nan":
                model.register_forward_hook(lambda module, inputs, output: _nan(output))
        return model

    def before_report(self, epoch: int, trial: TrialInfo) -> None:
        """When EPOCH is trained but not reported: the rank-0 worker dies as a killed process
        does, once; its last registered checkpoint is EPOCH - 1's. A slow fault sleeps first."""
        faults = self._of(trial)
        for fault in faults:
            if fault.kind == "slow" and trial.rank == 0:
                time.sleep(fault.seconds)
        for fault in faults:
            if fault.kind != "kill" or fault.epoch != epoch or trial.rank != 0:
                continue
            marker = Path(self.marker_dir) / f"cloce-fault-{trial.name}-kill{epoch}"
            if marker.exists():
                continue
            marker.write_text(str(os.getpid()))
            # Ray Train registers a reported checkpoint when its controller next polls the
            # workers; give it three polls, as a real crash some time into the epoch would.
            time.sleep(max(1.0, 3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0))))
            os.kill(os.getpid(), signal.SIGKILL)
