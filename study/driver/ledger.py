"""A results file of finished trials, one JSON line each, written as each trial ends.

With `--results-file`, a study reads it first and runs only what is missing: a cell's
finished search trials are handed to Optuna as already evaluated (the search asks only
for the rest), and a seed whose final trial is in the file is not run again. Unlike the
study directory's Ray state, the file is small enough to commit, so a long study continues
on another machine from where the last one stopped.
"""
from __future__ import annotations

import json
import os
import subprocess
from functools import lru_cache
from pathlib import Path

from ray.tune import Callback

from cloce.checkout import checkout_root
from study.trial.trainable import trial_record


class TrialLedger:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = []
        if self.path.exists():
            for number, line in enumerate(self.path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    self.records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{self.path}, line {number}: not a JSON trial record ({err.msg})") from None

    def of(self, stage: str, variant: str, k: int, fingerprint: str | None = None) -> list[dict]:
        """The cell's records; with a fingerprint, only those run under the same configuration
        (StudyConfig.cell_fingerprint): results of a changed experiment never mix in."""
        return [r for r in self.records if (r["stage"], r["variant"], r["k"]) == (stage, variant, k)
                and (fingerprint is None or r.get("fingerprint") == fingerprint)]

    def append(self, record: dict) -> None:
        """One line per trial, flushed to disk at once: a killed study loses no finished trial."""
        self.records.append(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as out:
            out.write(json.dumps(record, default=str) + "\n")
            out.flush()
            os.fsync(out.fileno())


@lru_cache(maxsize=1)
def code_version() -> str | None:
    """The commit of the code that ran a trial (`+dirty` with uncommitted changes), for the
    record's provenance; None outside a git checkout."""
    repo = checkout_root()
    if repo is None:  # an installed copy: a git repository around site-packages is somebody else's
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "cloce", "study"],
                               cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


class LedgerWriter(Callback):
    """Appends each trial of one cell's Tuner to the ledger when it ends: finished trials,
    and search trials ASHA stopped early (their best val F1 is still Optuna's answer)."""

    def __init__(self, ledger: TrialLedger, variant: str, k: int, fingerprint: str):
        self.ledger, self.variant, self.k, self.fingerprint = ledger, variant, k, fingerprint

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        stage = trial.config["stage"]  # both stages of a cell share one Tuner (study/driver/cell_search.py)
        record = trial_record(result, trial.config, self.variant, self.k, stage)
        if record["status"] != "FINISHED":
            if stage != "search" or result.get("best_val_micro_f1") is None or result.get("error"):
                return
            record |= {"status": "STOPPED", "val_micro_f1": result["best_val_micro_f1"]}
        self.ledger.append(record | {"fingerprint": self.fingerprint, "code": code_version()})
