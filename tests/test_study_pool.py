"""The study's pool (study/driver/pool.py): cells side by side, a cell that depends on another waits
for its search only, and the study-wide slot limit holds across cells. No Ray runtime."""
from __future__ import annotations

import pickle
import threading
import time

import pytest
from ray.tune.search import Searcher

from study.driver.pool import CellLimiter, CellRunner, register_slots, slots_named


class Counting(Searcher):
    """A searcher with an endless supply of configurations."""

    def __init__(self):
        super().__init__(metric="m", mode="max")
        self.asked = 0

    def suggest(self, trial_id):
        self.asked += 1
        return {"x": self.asked}

    def on_trial_complete(self, trial_id, result=None, error=False):
        pass


def test_the_study_limit_holds_across_cells_and_frees_with_each_ended_trial():
    register_slots("test-limit", 3)
    first, second = CellLimiter(Counting(), 2, "test-limit"), CellLimiter(Counting(), 5, "test-limit")
    first.publisher, second.publisher = "first", "second"
    assert first.suggest("a1") and first.suggest("a2")
    assert first.suggest("a3") is None  # the cell's own limit
    assert second.suggest("b1") is not None
    assert second.suggest("b2") is None  # the study's: 3 trials live
    assert slots_named("test-limit").taken == 3
    first.on_trial_complete("a1", {"m": 1})
    assert second.suggest("b2") is None  # held for the first cell's next trial
    assert first.suggest("a3") is not None
    first.on_trial_complete("a2", error=True)  # a failed trial's slot is free for anyone
    assert second.suggest("b2") is not None
    assert slots_named("test-limit").taken == 3


def test_without_a_study_limit_only_the_cells_own_limit_applies():
    register_slots("test-unlimited", 0)
    cells = [CellLimiter(Counting(), 4, "test-unlimited") for _ in range(5)]
    suggested = [cell.suggest(f"{n}-{t}") for n, cell in enumerate(cells) for t in range(6)]
    assert sum(s is not None for s in suggested) == 20


def test_a_limiter_pickles_without_its_lock_and_finds_its_slots_again():
    register_slots("test-pickle", 1)
    limiter = CellLimiter(Counting(), 2, "test-pickle")
    restored = pickle.loads(pickle.dumps(limiter))
    assert restored.suggest("t1") is not None
    assert limiter.suggest("t2") is None  # the same slots, by name


def test_cells_run_at_once_and_a_dependent_cell_waits_for_its_sources_search_only():
    cells = [("prompt_ki", 8), ("finetune", 8), ("cloce_s", 8)]
    runner = CellRunner(cells, in_parallel=True)
    running, peak, order, lock = set(), [0], [], threading.Lock()
    source_seeds_done = threading.Event()

    def work(cell):
        with lock:
            running.add(cell)
            peak[0] = max(peak[0], len(running))
        if cell[0] == "cloce_s":
            lr = runner.wait_for(("prompt_ki", 8))["lr"]
            # The source's seeds are still running: only its search had to finish.
            order.append(("cloce_s got lr", lr, source_seeds_done.is_set()))
        time.sleep(0.2)
        if cell[0] == "prompt_ki":
            runner.publish(cell, {"lr": 3e-4})
            time.sleep(0.3)  # its final seeds
            source_seeds_done.set()
        with lock:
            running.discard(cell)
        return [{"cell": cell}]

    rows = runner.run(work)
    assert [r["cell"] for r in rows] == cells  # the cells' order, whatever the finishing order
    assert peak[0] == 3
    assert order == [("cloce_s got lr", 3e-4, False)]


def test_a_cell_whose_source_failed_fails_instead_of_waiting_forever():
    runner = CellRunner([("prompt_ki", 8), ("cloce_s", 8)], in_parallel=True)
    waited = []

    def work(cell):
        if cell[0] == "prompt_ki":
            raise RuntimeError("every search trial failed")
        try:
            waited.append(runner.wait_for(("prompt_ki", 8)))
        except RuntimeError as err:
            waited.append(err)
        return [{"cell": cell}]

    with pytest.raises(RuntimeError, match="every search trial failed"):
        runner.run(work)
    # Seen here, not inside the pool's thread, where a failed check would go unnoticed.
    assert len(waited) == 1 and isinstance(waited[0], RuntimeError)
    assert "did not finish its search" in str(waited[0])


def test_one_cell_after_another_when_asked():
    runner = CellRunner([("a", 1), ("b", 1), ("c", 1)], in_parallel=False)
    running, peak = [0], [0]

    def work(cell):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        running[0] -= 1
        return [cell]

    assert runner.run(work) == [("a", 1), ("b", 1), ("c", 1)]
    assert peak[0] == 1


def two_cells_on_one_slot(name: str) -> tuple[CellLimiter, CellLimiter]:
    """Two cells' limiters on a study of one slot; the first has run a trial that ended well."""
    register_slots(name, 1)
    mine, other = CellLimiter(Counting(), 2, name), CellLimiter(Counting(), 2, name)
    mine.publisher, other.publisher = f"{name}-mine", f"{name}-other"
    assert mine.suggest("m1") is not None
    return mine, other


def test_an_ended_trials_slot_is_held_for_its_own_cell_then_let_go(monkeypatch):
    """A trial that ends well hands its slot to its cell's next trial (and with it its process,
    below); another cell gets it only once the hold has lapsed (HAND_OVER_S)."""
    from study.driver import pool

    now = [100.0]
    monkeypatch.setattr(pool.time, "monotonic", lambda: now[0])
    mine, other = two_cells_on_one_slot("test-hand-over")
    mine.on_trial_complete("m1", {"m": 1})
    assert mine.held_slots() == 1 and slots_named("test-hand-over").taken == 1
    assert other.suggest("o1") is None  # held for "mine"
    assert mine.suggest("m2") is not None and mine.held_slots() == 0  # the hold, taken
    mine.on_trial_complete("m2", {"m": 1})
    now[0] += pool.HAND_OVER_S + 0.1  # "mine" asks for nothing in time
    assert other.suggest("o1") is not None


def test_a_failed_trial_gives_its_slot_straight_back():
    mine, other = two_cells_on_one_slot("test-failed")
    mine.on_trial_complete("m1", error=True)  # its process is gone: nothing to hand on
    assert mine.held_slots() == 0 and other.suggest("o1") is not None


def test_a_cell_that_suggests_nothing_keeps_its_hold_no_longer_than_its_deadline(monkeypatch):
    from study.driver import pool

    now = [0.0]
    monkeypatch.setattr(pool.time, "monotonic", lambda: now[0])

    class Waiting(Counting):
        def suggest(self, trial_id):
            return None  # e.g. a search waiting for its trials' results

    mine, other = two_cells_on_one_slot("test-waiting")
    mine.on_trial_complete("m1", {"m": 1})
    mine.searcher = Waiting()
    for step in range(10):  # asked again and again, the hold keeps its first deadline
        now[0] = step * pool.HAND_OVER_S / 10
        assert mine.suggest(f"m{step + 2}") is None and mine.held_slots() == 1
    now[0] = pool.HAND_OVER_S + 0.01
    assert mine.held_slots() == 0 and other.suggest("o1") is not None


def test_a_cell_whose_search_is_finished_lets_its_hold_go():
    class Finished(Counting):
        def suggest(self, trial_id):
            return Searcher.FINISHED

    mine, other = two_cells_on_one_slot("test-finished")
    mine.on_trial_complete("m1", {"m": 1})
    mine.searcher = Finished()
    assert mine.suggest("m2") == Searcher.FINISHED
    assert mine.held_slots() == 0 and other.suggest("o1") is not None


def test_under_a_slot_limit_tune_keeps_a_trial_process_only_for_its_cells_held_slot():
    """Tune's controller builds its actor cache from `tune_controller._ObjectCache` in the Tuner's
    thread: with the patch on, an ended trial's process is kept while a slot is held for the
    cell, and let go with the slot; with no slot held it is not kept (the deadlock's half)."""
    import inspect

    from ray.tune.execution import tune_controller

    from study.ray_workarounds import cell_of_this_thread, handed_over_trial_actors

    # What the patch relies on (Ray 2.60): if any of it moves, the patch must follow.
    assert "_ObjectCache(may_keep_one=True)" in inspect.getsource(tune_controller.TuneController.__init__)
    assert "self._actor_cache.cache_object(" in inspect.getsource(tune_controller.TuneController._maybe_cache_trial_actor)
    assert "flush_cached_objects" in inspect.getsource(tune_controller.TuneController._cleanup_cached_actors)
    assert "pop_cached_object" in inspect.getsource(tune_controller.TuneController._maybe_reuse_cached_actor)

    register_slots("test-cache", 1)
    limiter = CellLimiter(Counting(), 2, "test-cache")
    limiter.publisher = "cache-cell"
    from study.ray_workarounds import LIMITERS

    LIMITERS.put("cache-cell", limiter)

    def controller_cache():
        return tune_controller._ObjectCache(may_keep_one=True)  # the controller's call

    assert controller_cache().cache_object("1 CPU", object())  # Tune's default keeps an idle one
    with handed_over_trial_actors(True), cell_of_this_thread("cache-cell"):
        cache = controller_cache()
        assert not cache.cache_object("1 CPU", object())  # no slot held: let go
        assert limiter.suggest("t1") is not None
        limiter.on_trial_complete("t1", {"m": 1})
        process = object()
        assert cache.cache_object("1 CPU", process)  # kept for the held slot
        assert list(cache.flush_cached_objects()) == []  # the controller's end-of-step flush keeps it
        assert limiter.suggest("t2") is not None  # the cell's next trial takes the slot ...
        cache.increase_max("1 CPU")  # ... and is staged: Tune asks for its process
        assert cache.pop_cached_object("1 CPU") is process
        limiter.on_trial_complete("t2", {"m": 1})
        assert cache.cache_object("1 CPU", process)
        slots_named("test-cache").let_go("cache-cell")  # the hold ends unclaimed
        cache.decrease_max("1 CPU")
        assert list(cache.flush_cached_objects()) == [process]  # let go with the slot
    assert controller_cache().cache_object("1 CPU", object())  # the patch is off again
    with handed_over_trial_actors(False):
        assert controller_cache().cache_object("1 CPU", object())


def test_a_study_with_a_slot_limit_runs_its_cells_with_handed_over_trial_processes(monkeypatch, tmp_path):
    """run_study_cells turns the patch on exactly when resources.max_running_trials is set."""
    from contextlib import contextmanager

    from study.driver import cells as stages
    from study.configuration.study_file import load_study_config

    seen = []

    @contextmanager
    def spy(enabled):
        seen.append(enabled)
        yield

    monkeypatch.setattr(stages, "handed_over_trial_actors", spy)
    monkeypatch.setattr(stages.CellRunner, "run", lambda self, work: [])
    for limit in (2, 0):
        study = load_study_config("quick", {"resources.max_running_trials": limit, "study.variants": ["finetune"]})
        stages.run_study_cells(study, None, tmp_path / f"limit{limit}", False, [])
    assert seen == [True, False]
