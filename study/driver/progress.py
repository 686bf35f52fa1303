"""A one-line-per-event progress display while a study runs (Ray Tune callback)."""
from __future__ import annotations

import itertools
import time

from ray.tune import Callback


class ProgressPrinter(Callback):
    def __init__(self) -> None:
        self.started = time.perf_counter()
        # Shared by every cell's Tuner, each in its own thread: a counter that cannot lose a count.
        self._counter = itertools.count(1)
        self.done = 0

    def _say(self, text: str) -> None:
        print(f"[{time.perf_counter() - self.started:7.1f}s] {text}", flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._say(f"start  {trial.experiment_dir_name}/{trial.trial_id} {_short(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "final" in result:
            return
        epoch = result.get("epochs_done")
        if epoch is not None:
            self._say(f"epoch  {trial.trial_id} {epoch}: val micro-F1 {result.get('val_micro_f1', 0):.3f}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done = next(self._counter)
        result = trial.last_result or {}
        if result.get("error"):  # ended itself without a retry (a NaN loss): not a stopped trial
            self._say(f"FAILED {trial.trial_id} {result['error'][:200]}  [{self.done} trials done]")
            return
        test = result.get("test_micro_f1")
        line = f"done   {trial.trial_id} val {result.get('best_val_micro_f1', float('nan')):.3f}"
        self._say(line + (f" test {test:.3f}" if test is not None else " (stopped early)") + f"  [{self.done} trials done]")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.done = next(self._counter)
        self._say(f"FAILED {trial.trial_id} {_short(trial.config)} (see its MLflow run)  [{self.done} trials done]")


def _short(config: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items()))
