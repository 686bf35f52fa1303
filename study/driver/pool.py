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

import bisect
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Dict, Optional

from ray.tune.search import ConcurrencyLimiter, Searcher

from study.ray_workarounds import LIMITERS, SLOTS



# How long a slot freed by a cell's ended trial waits for that cell's next trial (seconds).
# Tune keeps an ended trial's process only for a trial of its own Tuner; a cell suggests its
# next trial on its controller's next loop (~0.1 s, a few seconds on a loaded 2-core machine).
# Held for the cell, the slot and the process go on together; unclaimed, both are let go.
HAND_OVER_S = 5.0


class StudySlots:
    """How many trials the whole study may have running (or waiting for resources) at once.

    A slot is taken by a trial, or held for a cell for HAND_OVER_S after one of the cell's
    trials ended (`hand_over`): the cell's next trial takes it, and with it the ended trial's
    process (study/ray_workarounds.py: handed_over_trial_actors). Without the hold the slot
    went to whichever cell asked first, and the ended trial's process to nobody: under a
    saturated limit nearly every trial started a new process (issue 26: 72 processes for 105
    trials)."""

    def __init__(self, limit: int | None):
        self.limit = limit or None  # None: no limit of ours, the cluster's resources decide
        self._lock = threading.Lock()
        self._taken: set[str] = set()
        self._held: dict[str, list[float]] = {}  # cell -> deadlines of the slots held for it

    def try_take(self, trial_id: str) -> bool:
        with self._lock:
            self._expire(time.monotonic())
            if trial_id in self._taken:
                return True
            if self.limit is not None and len(self._taken) + self._holds() >= self.limit:
                return False
            self._taken.add(trial_id)
            return True

    def take_held(self, trial_id: str, cell: str) -> float | None:
        """A slot held for `cell`, now taken by its trial `trial_id`: the hold's deadline, or None."""
        with self._lock:
            self._expire(time.monotonic())
            held = self._held.get(cell)
            if not held:
                return None
            deadline = held.pop(0)
            self._taken.add(trial_id)
            return deadline

    def give_back(self, trial_id: str) -> None:
        with self._lock:
            self._taken.discard(trial_id)

    def hand_over(self, trial_id: str, cell: str, until: float | None = None) -> None:
        """The trial's slot, held for the next trial of `cell` until `until` (default: HAND_OVER_S
        from now). A trial that took a held slot and was not suggested after all gives it back
        with the hold's own deadline: never extended, so a cell that never suggests lets go."""
        with self._lock:
            if trial_id in self._taken:
                self._taken.discard(trial_id)
                bisect.insort(self._held.setdefault(cell, []), time.monotonic() + HAND_OVER_S if until is None else until)

    def held_for(self, cell: str) -> int:
        """How many slots are held for `cell` now (expired holds are let go first)."""
        with self._lock:
            self._expire(time.monotonic())
            return len(self._held.get(cell, ()))

    def let_go(self, cell: str) -> None:
        """The cell will suggest no more trials: its held slots go back to the study."""
        with self._lock:
            self._held.pop(cell, None)

    def _expire(self, now: float) -> None:
        for cell, deadlines in list(self._held.items()):
            deadlines[:] = [d for d in deadlines if d > now]
            if not deadlines:
                del self._held[cell]

    def _holds(self) -> int:
        return sum(len(deadlines) for deadlines in self._held.values())

    @property
    def taken(self) -> int:
        with self._lock:
            return len(self._taken) + self._holds()


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

    def __init__(self, searcher: Searcher, cell_limit: int, slots_name: str, hands_over: bool = True):
        self.slots_name = slots_name
        # Only where the Tuner reuses trial processes (no ASHA: study/driver/cells.py).
        self.hands_over = hands_over
        self.publisher = getattr(searcher, "publisher", "")
        super().__init__(searcher, max_concurrent=cell_limit)
        LIMITERS.put(self.publisher, self)

    def __setstate__(self, state: dict) -> None:  # unpickled (Tuner.restore): the limiter in use
        self.__dict__.update({"hands_over": False} | state)  # saved before hand-overs existed: none
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
        held_until = slots.take_held(trial_id, self.publisher)  # first the slot held for this cell
        if held_until is None and not slots.try_take(trial_id):
            return None  # Tune asks again on its next loop
        suggestion = super().suggest(trial_id)
        if suggestion is None and held_until is not None:
            slots.hand_over(trial_id, self.publisher, until=held_until)  # nothing yet (a search waiting)
        elif suggestion in (None, Searcher.FINISHED):
            slots.give_back(trial_id)
            if suggestion == Searcher.FINISHED:
                slots.let_go(self.publisher)
        return suggestion

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False):
        slots = slots_named(self.slots_name)
        if self.hands_over and result is not None and not error:
            slots.hand_over(trial_id, self.publisher)  # its process may run the cell's next trial
        else:
            slots.give_back(trial_id)  # failed or never started: no process to hand on
        super().on_trial_complete(trial_id, result=result, error=error)

    def held_slots(self) -> int:
        return slots_named(self.slots_name).held_for(self.publisher)


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
