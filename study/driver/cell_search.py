"""Both stages of one (variant, K) cell in one Tune run: the search trials, then the chosen
configuration on every final seed, suggested the moment the last search trial has ended.

One Tuner per cell instead of one per stage: the final trials start in the trial processes
the search leaves (`reuse_actors`), not in new ones; a new Tuner and its processes took
25-48 s to start its first final trial on a loaded 2-core machine, while the cell's slots
stood idle (a one-off probe of benchmark 7's study: benchmarks/readings.md, 7).

What each stage chooses is unchanged: the search is the cell's own seeded Optuna searcher,
and the choice is `best_record` over the search's records, as the tables read it. With ASHA
the trial processes are not reused (a stopped trial must lose its process: study/driver/cells.py),
so there the gain is only that no second Tuner starts.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional

from ray.tune import Callback
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from study.driver.pool import limiter_named
from study.ray_workarounds import PUBLISHERS, SEARCHERS
from study.trial.trainable import trial_record

OBJECTIVE, MODE = "best_val_micro_f1", "max"

def register_publisher(name: str, publish: Callable[[dict | None, BaseException | None], None]) -> None:
    PUBLISHERS.put(name, publish)


def _publish(name: str, best: dict | None, error: BaseException | None) -> None:
    publish = PUBLISHERS.get(name)
    if publish is not None:
        publish(best, error)


def best_record(records: list[dict]) -> dict | None:
    """The search's choice: the finished trial with the best val micro-F1 (None: none finished)."""
    finished = [r for r in records if r["status"] == "FINISHED"]
    # Ties broken by the configuration, not by completion order: the searcher (which sees
    # trials as they end) and the tables (which read them in creation order) choose alike.
    return max(finished, key=lambda r: (r["val_micro_f1"], config_key(r["config"]))) if finished else None


def stands_as_final(record: dict, seeds, epochs: int) -> bool:
    """A chosen search trial is its seed's final run (same config, same seed) when that seed is
    one of the study's and it trained every epoch (ASHA did not cut it)."""
    return record.get("seed") in seeds and len(record.get("history") or []) == epochs


def fixed_config(constants: dict) -> dict:
    """The configuration of a cell with nothing to search: its param space's fixed values."""
    return {name: value for name, value in constants.items() if name not in ("seed", "stage")}


def search_failed(variant: str, k: int) -> RuntimeError:
    return RuntimeError(f"every search trial of {variant} K={k} failed; see the MLflow runs")


def is_final(trial) -> bool:
    return (getattr(trial, "config", None) or {}).get("stage") == "final"


class CellSearcher(Searcher):
    """Search trials from `search` (None: the search is already done, or there is nothing to
    search), then one final trial per seed with the chosen configuration.

    `constants` are the fixed values of the cell's param space (merged into every search
    suggestion by Tune); `done` the search records a results file already holds (they count
    towards the choice); `finals_done` the seeds it already has final runs of, by
    configuration (`config_key`). The chosen search trial stands as its seed's final run when
    it trained all `epochs`. Plain data only: Tune pickles the searcher for `Tuner.restore`."""

    def __init__(self, search: Searcher | None, trials: int, constants: dict, done: list[dict], seeds: list[int],
                 epochs: int, finals_done: dict[str, list[int]], variant: str, k: int, publisher: str):
        super().__init__(metric=OBJECTIVE, mode=MODE)
        self.search, self.search_left = search, trials if search is not None else 0
        self.constants, self.records, self.seeds = dict(constants), list(done), list(seeds)
        self.epochs, self.finals_done = epochs, dict(finals_done)
        self.variant, self.k, self.publisher = variant, k, publisher
        self.live_search: dict[str, dict] = {}  # trial id -> its configuration
        self.recorded: set[str] = set()  # search trials whose end is in `records`
        self.search_ids: set[str] = set()  # trials the inner search suggested: only those reach it
        self.finals_started: set[int] = set()  # seeds with a final trial in the Tuner
        self.chosen: dict | None = None  # the search's best record, once it has ended
        self.pending_seeds: list[int] | None = None  # None: the search has not ended yet
        SEARCHERS.put(publisher, self)
        if self.search_left == 0:
            self._choose()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        if self.search is None:
            return not config  # no search: the configurations are all ours
        return self.search.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> Optional[Dict]:
        SEARCHERS.put(self.publisher, self)
        if self.search_left > 0:
            suggestion = self.search.suggest(trial_id)
            if suggestion is None:
                return None
            if suggestion != Searcher.FINISHED:
                self.search_left -= 1
                config = self.constants | suggestion | {"stage": "search"}
                self.live_search[trial_id] = config
                self.search_ids.add(trial_id)
                return config
            self.search_left = 0
            self._choose_if_ended()
        if self.pending_seeds is None:
            return None  # search trials still running: the final seeds wait for their choice
        if not self.pending_seeds:
            return Searcher.FINISHED
        seed = self.pending_seeds.pop(0)
        self.finals_started.add(seed)
        return dict(self.chosen["config"]) | {"seed": seed, "stage": "final"}

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False):
        config = self.live_search.pop(trial_id, None)
        if config is None:
            return  # a final trial: nothing depends on it here
        if self.search is not None and trial_id in self.search_ids:
            self.search.on_trial_complete(trial_id, result=result, error=error)
        self._record(trial_id, config, None if error else result)
        self._choose_if_ended()

    def _record(self, trial_id: str, config: dict, result: Optional[Dict]) -> None:
        self.recorded.add(trial_id)
        self.records.append(trial_record(result or {}, config, self.variant, self.k, "search",
                                         None if result else "trial failed"))

    def reconcile(self, trials) -> None:
        """Agree with the Tuner's trials. Tune saves its trial list and its searcher one after
        the other (and uploads them in no set order), so a killed driver can restore a searcher
        that missed the last events (a search trial that ended: it would wait for it forever;
        one it never saw suggested; a final seed already started) or one ahead of the trials (a
        suggestion whose trial was never saved: suggested again)."""
        known = {trial.trial_id for trial in trials}
        for trial_id in [t for t in self.live_search if t not in known]:
            del self.live_search[trial_id]
            self.search_left += 1
        seeds = {int(t.config["seed"]) for t in trials if (t.config or {}).get("stage") == "final"}
        for seed in self.finals_started - seeds:
            self.finals_started.discard(seed)
            if self.pending_seeds is not None:
                self.pending_seeds = sorted({*self.pending_seeds, seed}, key=self.seeds.index)
        for trial in trials:
            config = dict(trial.config or {})
            if config.get("stage") == "final":
                self.finals_started.add(int(config["seed"]))
                if self.pending_seeds and int(config["seed"]) in self.pending_seeds:
                    self.pending_seeds.remove(int(config["seed"]))
                continue
            if trial.trial_id in self.recorded:
                continue
            if trial.trial_id not in self.live_search:  # suggested after the saved state
                self.live_search[trial.trial_id] = config
                self.search_left = max(0, self.search_left - 1)
            if trial.status in ("TERMINATED", "ERROR"):
                self.live_search.pop(trial.trial_id)
                self._record(trial.trial_id, config, None if trial.status == "ERROR" else trial.last_result)
        self._choose_if_ended()

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        if trial_id in self.search_ids and trial_id in self.live_search and self.search is not None:
            self.search.on_trial_result(trial_id, result)

    def _choose_if_ended(self) -> None:
        if self.search_left == 0 and not self.live_search and self.pending_seeds is None:
            self._choose()

    def _choose(self) -> None:
        best = best_record(self.records) if self.records else None
        if self.records and best is None:
            self.pending_seeds = []
            _publish(self.publisher, None, search_failed(self.variant, self.k))
            return
        if best is None:  # nothing was searched: the constants are the configuration
            best = {"config": fixed_config(self.constants), "seed": None}
        self.chosen = best
        reused = {best["seed"]} if stands_as_final(best, self.seeds, self.epochs) else set()
        taken = set(self.finals_done.get(config_key(best["config"]), ())) | self.finals_started | reused
        self.pending_seeds = [s for s in self.seeds if s not in taken]
        _publish(self.publisher, best["config"], None)

    def __setstate__(self, state: dict) -> None:  # unpickled (Tuner.restore): the searcher in use
        self.__dict__.update(state)
        SEARCHERS.put(self.publisher, self)

    # Tune saves a searcher with its experiment state, for `Tuner.restore`.
    def get_state(self) -> dict:
        return {name: value for name, value in self.__dict__.items() if name != "search"}

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        # One file: Tune writes it under a temporary name, then renames that file alone.
        state = {"cell": self.get_state(), "search": None}
        if self.search is not None:
            with tempfile.TemporaryDirectory() as scratch:
                self.search.save(os.path.join(scratch, "search.pkl"))
                state["search"] = Path(scratch, "search.pkl").read_bytes()
        with open(checkpoint_path, "wb") as out:
            pickle.dump(state, out)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as source:
            state = pickle.load(source)
        self.set_state(state["cell"])
        if self.search is not None and state["search"] is not None:
            with tempfile.TemporaryDirectory() as scratch:
                Path(scratch, "search.pkl").write_bytes(state["search"])
                self.search.restore(os.path.join(scratch, "search.pkl"))
        SEARCHERS.put(self.publisher, self)


class CellSearchSync(Callback):
    """Before each step of a cell's Tuner, its searcher agrees with the Tuner's trials (see
    CellSearcher.reconcile); it names the searcher, so a pickled copy finds the live one."""

    def __init__(self, publisher: str):
        self.publisher = publisher

    def on_step_begin(self, iteration, trials, **info):
        limiter = limiter_named(self.publisher)
        if limiter is not None:
            limiter.reconcile(trials)
        searcher = SEARCHERS.get(self.publisher)
        if searcher is not None:
            searcher.reconcile(trials)


class SearchOnlyASHA(ASHAScheduler):
    """ASHA over the search trials of a cell; its final trials always run to the end."""

    def on_trial_add(self, tune_controller, trial):
        if not is_final(trial):
            super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        # A trial's end (its summary, "final") is never cut: the record needs that report.
        if is_final(trial) or "final" in result:
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result):
        if not is_final(trial):
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        if not is_final(trial):
            super().on_trial_remove(tune_controller, trial)


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)
