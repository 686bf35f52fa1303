"""Where this study works around Ray's own design, in one place: each registry and each patch
of a Ray internal, with why it exists. Ray is pinned (pyproject.toml); every patch has a test that
fails when an upgrade moves what it patches (tests/test_ray_workarounds.py).

Registries (driver process). Tune pickles a cell's searcher and limiter into the cell's experiment
state (for `Tuner.restore`) and may unpickle or copy them: such an object cannot hold a lock, a
thread's callback or another cell's live object, so it holds a name and finds the live object here.
Patches. Tune's actor cache (kept for a cell's held slot), its controller's idle wait, Ray Train V2's default
callbacks, and Tune's trainable registry.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator


class Registry:
    """Live objects of this process by name, thread-safe (every cell's Tuner runs in its own thread)."""

    def __init__(self, what: str):
        self.what = what
        self._lock = threading.Lock()
        self._items: dict[str, Any] = {}

    def put(self, name: str, item):
        with self._lock:
            self._items[name] = item
            return item

    def get(self, name: str):
        with self._lock:
            return self._items.get(name)

    def get_or_put(self, name: str, item):
        with self._lock:
            return self._items.setdefault(name, item)


# The study's slot pool (study/driver/pool.py: StudySlots), by study: searchers name it instead of holding its lock.
SLOTS = Registry("study slots")
# The limiter a cell's Tuner really uses (study/driver/pool.py: CellLimiter), by its searcher's publisher name.
LIMITERS = Registry("cell limiters")
# The searcher a cell's Tuner really uses (Tune may unpickle or copy it), by publisher name, for CellSearchSync.
SEARCHERS = Registry("cell searchers")
# The function that publishes a cell's choice to the cells that take its lr, by publisher name.
PUBLISHERS = Registry("search publishers")


# Tune's trainable registry is process-wide and not thread-safe.
_TRAINABLE_REGISTRY_LOCK = threading.Lock()


def register_cell_trainable(name: str, trainable) -> str:
    """Tune registers a trainable process-wide under its __name__, and its registry is not
    thread-safe: cells starting side by side under one name would run each other's trials, or
    fail on a dict changed during iteration. Each cell registers its own name, one at a time,
    and its Tuner is given that name."""
    from ray import tune

    with _TRAINABLE_REGISTRY_LOCK:
        tune.register_trainable(name, trainable)
    return name


# The cell whose Tuner runs in this thread (study/driver/cells.py: run_cell), for the actor
# cache its TuneController builds here.
_THIS_THREADS_CELL = threading.local()


@contextmanager
def cell_of_this_thread(cell: str) -> Iterator[None]:
    _THIS_THREADS_CELL.name = cell
    try:
        yield
    finally:
        _THIS_THREADS_CELL.name = ""


def handed_over_actor_cache(cache_class):
    """Tune's actor cache (`_ObjectCache`) for one cell's TuneController, under a study-wide slot limit.

    Tune keeps an ended trial's process (its actor, with its CPUs) for a trial already waiting
    in the same Tuner, and by default one more even when none waits
    (`_ObjectCache(may_keep_one=True)`), for a trial its searcher may suggest next. Under a
    study-wide slot limit both go wrong:
    - the idle process kept with no trial waiting deadlocks: a cell whose search ended keeps
      it while another cell takes the slot it freed; that cell's trial waits for the CPUs the
      idle processes hold, and they wait for a slot (seen on 2026-11-28: scierc_protocol with
      2 slots on 2 CPUs, two idle prompt_ki processes, nothing running for minutes);
    - with none kept, no trial is ever waiting in a saturated cell (its searcher gets no slot
      until one ends), so every trial starts a new process: 72 processes for 105 trials in the
      scale benchmark, each paying its imports (issue 26).
    So a process is kept exactly while the study holds its slot for the cell
    (study/driver/pool.py: StudySlots.hand_over, HAND_OVER_S): the cell's next trial takes
    both, and an unclaimed slot and its process are let go together.
    Private Tune API, pinned Ray: tests/test_study_pool.py fails if it moves."""

    class HandedOverActorCache(cache_class):
        def __init__(self, may_keep_one: bool = True):  # TuneController passes may_keep_one=True
            super().__init__(may_keep_one=False)
            self._cell = getattr(_THIS_THREADS_CELL, "name", "")

        def _held_slots(self) -> int:
            limiter = LIMITERS.get(self._cell) if self._cell else None
            return limiter.held_slots() if limiter is not None else 0

        def cache_object(self, key, obj) -> bool:
            if super().cache_object(key, obj):  # a trial of this Tuner waits for it
                return True
            if self.num_cached_objects >= self.total_max_objects + self._held_slots():
                return False
            self._cached_objects[key].append(obj)
            self._num_cached_objects += 1
            return True

        def flush_cached_objects(self, force_all: bool = False):
            kept = 0 if force_all else self._held_slots()
            for key, objs in self._cached_objects.items():
                wanted = 0 if force_all else self._max_num_objects[key]
                while len(objs) > wanted + kept:
                    self._num_cached_objects -= 1
                    yield objs.pop(0)
                kept = max(0, kept - (len(objs) - wanted))

    return HandedOverActorCache


@contextmanager
def handed_over_trial_actors(enabled: bool) -> Iterator[None]:
    """While on, every TuneController built in this process keeps an ended trial's process only
    for a trial already waiting for it or for a slot held for its cell (handed_over_actor_cache)."""
    if not enabled:
        yield
        return
    from ray.tune.execution import tune_controller

    keeping = tune_controller._ObjectCache
    tune_controller._ObjectCache = handed_over_actor_cache(keeping)
    try:
        yield
    finally:
        tune_controller._ObjectCache = keeping


# How long an idle TuneController waits for its next event (seconds); Tune's own is 0.1.
CONTROLLER_IDLE_WAIT_S = 1.0


def patient_actor_manager(manager_class, idle_wait_s: float):
    """Tune's actor manager for a TuneController whose idle loop waits `idle_wait_s`, not 0.1 s.

    Each controller loop (`TuneController.step`) asks its searcher for a trial, starts what it
    can, then waits up to 0.1 s for one event (`RayActorManager.next(timeout=0.1)`), saves its
    state when due, and goes round again. The wait ends the moment any trial reports, starts,
    ends or gets its resources: a longer one delays none of those, only what is not an event
    to this Tuner (a slot another cell gave back, a source cell's chosen lr), by at most
    `idle_wait_s`. At 0.1 s, one Tuner per cell loops 10 times a second while its trials
    train: 21 Tuners were most of the driver's CPU in the 64-slot benchmark (py-spy), 226 ms
    per trial (issue 26). Private Tune API, pinned Ray: tests/test_ray_workarounds.py fails if it moves."""

    class PatientActorManager(manager_class):
        def next(self, timeout=None) -> bool:
            # None blocks and 0 polls, as asked; a short wait becomes the idle one
            patient = timeout is not None and 0 < timeout < idle_wait_s
            return super().next(idle_wait_s if patient else timeout)

    return PatientActorManager


@contextmanager
def patient_controller_loops(idle_wait_s: float | None = None) -> Iterator[None]:
    """While on, every TuneController built in this process waits `idle_wait_s` (default
    CONTROLLER_IDLE_WAIT_S) for an event when idle (patient_actor_manager); 0.1 or less: Tune's own."""
    idle_wait_s = CONTROLLER_IDLE_WAIT_S if idle_wait_s is None else idle_wait_s
    if idle_wait_s <= 0.1:
        yield
        return
    from ray.tune.execution import tune_controller

    stock = tune_controller.RayActorManager
    tune_controller.RayActorManager = patient_actor_manager(stock, idle_wait_s)
    try:
        yield
    finally:
        tune_controller.RayActorManager = stock


def lean_trainer_class(local_runtime: bool):
    """TorchTrainer without the actors a cloce trial never uses: the Ray Data dataset manager
    (no datasets are passed) and, on the study's own local runtime (which dies with the
    driver), the placement-group cleaner. Each is one more Python process per trial; on the
    2-core machine a trivial trial took 10.5 s stock vs 8.8-9.4 s lean, one at a time
    (`python -m benchmarks.run --only ray_trivial`); two at a time, where the CPU is short,
    the saving is larger (experiments/results/quick_default.md).
    These callbacks are Ray internals (Ray is pinned): without them, the stock trainer."""
    from ray.train.torch import TorchTrainer

    try:
        from ray.train.v2._internal.callbacks.datasets import DatasetsCallback
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    except ImportError:
        return TorchTrainer
    unused = (DatasetsCallback, PlacementGroupCleanerCallback) if local_runtime else (DatasetsCallback,)

    class LeanTorchTrainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [cb for cb in super()._create_default_callbacks() if not isinstance(cb, unused)]

    return LeanTorchTrainer if hasattr(TorchTrainer, "_create_default_callbacks") else TorchTrainer
