"""Every (variant, K) cell of a study at once, drawing on one pool of trial slots.

Design: one Ray Tune `Tuner` per cell and stage, each run in its own driver thread (Tune
supports `fit()` off the main thread: it only skips installing its SIGINT handler there).
We chose this over one Tuner whose searcher serves every cell because each cell keeps,
unchanged, everything that made it correct alone: its own seeded `OptunaSearch` (what one
cell chooses never depends on how many cells run beside it), its own ASHA brackets
(trials of different variants are never compared at a rung), its own Tune experiment
directory (`Tuner.restore` per cell on `--resume`), and its own ledger and MLflow keys.
The cells only share the cluster, and the threads cost the driver nothing while trials run.

Limits, from the inside out:
- a cell runs at most `search.max_concurrent_trials` trials at a time (0: all of them);
- the study runs at most `resources.max_running_trials` at a time (0: what the cluster
  holds; Ray's resources are then the only limit). Every cell's searcher draws from one
  `StudySlots` before it suggests a trial;
- a cell that takes another cell's lr (`spaces.<variant>.lr = "<source>"`) waits for that
  cell's search only; its neighbours never wait. A cell's final seeds follow its search in
  the same Tuner (study/driver/cell_search.py).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, Optional

from ray.tune.search import ConcurrencyLimiter, Searcher

from study.ray_workarounds import LIMITERS, SLOTS



class StudySlots:
    """How many trials the whole study may have running (or waiting for resources) at once."""

    def __init__(self, limit: int | None):
        self.limit = limit or None  # None: no limit of ours, the cluster's resources decide
        self._lock = threading.Lock()
        self._taken: set[str] = set()

    def try_take(self, trial_id: str) -> bool:
        with self._lock:
            if trial_id in self._taken:
                return True
            if self.limit is not None and len(self._taken) >= self.limit:
                return False
            self._taken.add(trial_id)
            return True

    def give_back(self, trial_id: str) -> None:
        with self._lock:
            self._taken.discard(trial_id)

    @property
    def taken(self) -> int:
        with self._lock:
            return len(self._taken)


def register_slots(name: str, limit: int | None) -> StudySlots:
    return SLOTS.put(name, StudySlots(limit))


def slots_named(name: str) -> StudySlots:
    """A restored searcher in a process that never registered its study: no study-wide limit."""
    return SLOTS.get_or_put(name, StudySlots(None))


def limiter_named(name: str) -> "CellLimiter | None":
    return LIMITERS.get(name)


class CellLimiter(ConcurrencyLimiter):
    """Tune's ConcurrencyLimiter for one cell (`cell_limit` live trials), which also takes one
    of the study's slots for every trial it suggests and gives it back when the trial ends."""

    def __init__(self, searcher: Searcher, cell_limit: int, slots_name: str):
        self.slots_name = slots_name
        self.publisher = getattr(searcher, "publisher", "")
        super().__init__(searcher, max_concurrent=cell_limit)
        LIMITERS.put(self.publisher, self)

    def __setstate__(self, state: dict) -> None:  # unpickled (Tuner.restore): the limiter in use
        self.__dict__.update(state)
        LIMITERS.put(self.publisher, self)

    def reconcile(self, trials) -> None:
        """Its live trials as the Tuner's trials say (its saved state can be older or newer:
        CellSearcher.reconcile); a trial it counts that has ended would hold a place forever."""
        live = {t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")}
        for trial_id in self.live_trials - live:
            slots_named(self.slots_name).give_back(trial_id)
        self.live_trials = set(live)
        self.num_unfinished_live_trials = len(live)

    def suggest(self, trial_id: str) -> Optional[Dict]:
        if len(self.live_trials) >= self.max_concurrent:
            return None
        slots = slots_named(self.slots_name)
        if not slots.try_take(trial_id):
            return None  # Tune asks again on its next loop
        suggestion = super().suggest(trial_id)
        if suggestion in (None, Searcher.FINISHED):
            slots.give_back(trial_id)
        return suggestion

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False):
        slots_named(self.slots_name).give_back(trial_id)
        super().on_trial_complete(trial_id, result=result, error=error)


class CellRunner:
    """Runs every cell's work (a function of the cell) in threads, all at once or one after
    another; a cell's search result is published as soon as it is chosen, so a cell that
    depends on it (lr_from) starts its own search then, not when the source cell's seeds end."""

    def __init__(self, cells: list[tuple[str, int]], in_parallel: bool):
        self.cells = cells
        self.in_parallel = in_parallel
        self.chosen: dict[tuple[str, int], Future] = {cell: Future() for cell in cells}

    def publish(self, cell: tuple[str, int], best: dict | None, error: BaseException | None = None) -> None:
        future = self.chosen[cell]
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(best)

    def wait_for(self, cell: tuple[str, int]) -> dict:
        """The chosen hyper-parameters of an earlier cell (raises its failure)."""
        return self.chosen[cell].result()

    def run(self, work: Callable[[tuple[str, int]], list[dict]]) -> list[dict]:
        """`work(cell)` for every cell; the results in the cells' order."""
        workers = len(self.cells) if self.in_parallel else 1
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="cell") as pool:
            futures = [pool.submit(self._run_one, work, cell) for cell in self.cells]
            return [row for future in futures for row in future.result()]

    def _run_one(self, work, cell) -> list[dict]:
        try:
            return work(cell)
        finally:
            # A cell that ended without publishing (it failed before choosing) must not leave
            # a dependent cell waiting forever.
            self.publish(cell, None, RuntimeError(f"{cell[0]} K={cell[1]} did not finish its search"))
