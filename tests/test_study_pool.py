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
    assert first.suggest("a1") and first.suggest("a2")
    assert first.suggest("a3") is None  # the cell's own limit
    assert second.suggest("b1") is not None
    assert second.suggest("b2") is None  # the study's: 3 trials live
    assert slots_named("test-limit").taken == 3
    first.on_trial_complete("a1", {"m": 1})
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


def test_under_a_slot_limit_tune_keeps_no_idle_trial_process():
    """Tune's controller builds its actor cache from `tune_controller._ObjectCache`: with the
    patch on, an ended trial's process with no trial waiting for it is let go, not kept."""
    import inspect

    from ray.tune.execution import tune_controller

    from study.ray_workarounds import no_idle_trial_actors

    # How TuneController.__init__ builds it (Ray 2.60): if that changes, the patch must follow.
    assert "_ObjectCache(may_keep_one=True)" in inspect.getsource(tune_controller.TuneController.__init__)

    def keeps_an_idle_process() -> bool:
        cache = tune_controller._ObjectCache(may_keep_one=True)  # the controller's call
        return cache.cache_object("1 CPU", object())  # no trial waits for "1 CPU"

    assert keeps_an_idle_process()  # Tune's default: the deadlock's half
    with no_idle_trial_actors(True):
        assert not keeps_an_idle_process()
    assert keeps_an_idle_process()
    with no_idle_trial_actors(False):
        assert keeps_an_idle_process()


def test_a_study_with_a_slot_limit_runs_its_cells_without_idle_trial_processes(monkeypatch, tmp_path):
    """run_study_cells turns the patch on exactly when resources.max_running_trials is set."""
    from contextlib import contextmanager

    from study.driver import cells as stages
    from study.configuration.study_file import load_study_config

    seen = []

    @contextmanager
    def spy(enabled):
        seen.append(enabled)
        yield

    monkeypatch.setattr(stages, "no_idle_trial_actors", spy)
    monkeypatch.setattr(stages.CellRunner, "run", lambda self, work: [])
    for limit in (2, 0):
        study = load_study_config("quick", {"resources.max_running_trials": limit, "study.variants": ["finetune"]})
        stages.run_study_cells(study, None, tmp_path / f"limit{limit}", False, [])
    assert seen == [True, False]
