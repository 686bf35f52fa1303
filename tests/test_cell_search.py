"""Both stages of a cell in one Tuner (study/driver/cell_search.py): the search's trials first, the
chosen configuration on every final seed the moment the last search trial has ended, its
choice published mid-Tuner, and ASHA over search trials only. No Ray runtime."""
from __future__ import annotations

import pickle
from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from study.driver.cell_search import CellSearcher, config_key, register_publisher
from study.driver.cells import asha_scheduler


class Listed(Searcher):
    """A search that suggests the given configurations in order, then is done."""

    def __init__(self, configs):
        super().__init__(metric="best_val_micro_f1", mode="max")
        self.configs, self.told = list(configs), []

    def suggest(self, trial_id):
        return self.configs.pop(0) if self.configs else Searcher.FINISHED

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append((trial_id, error))

    def save(self, checkpoint_path):
        with open(checkpoint_path, "wb") as out:
            pickle.dump(self.configs, out)

    def restore(self, checkpoint_path):
        with open(checkpoint_path, "rb") as source:
            self.configs = pickle.load(source)


def finished(val: float, epochs: int = 2) -> dict:
    """A trial's last result as run_trial reports it."""
    return {"final": 1, "val_micro_f1": val, "best_val_micro_f1": val, "history_json": "[" + ",".join(["{}"] * epochs) + "]"}


def cell(search, trials=2, done=(), finals_done=None, publisher="test-cell", seeds=(1, 2, 3)):
    return CellSearcher(search, trials, {"seed": 1, "lr": 1e-4}, list(done), list(seeds), 2, finals_done or {},
                        "cloce_d", 8, publisher)


def test_final_seeds_wait_for_every_search_trial_then_take_the_best_config():
    published = []
    register_publisher("test-best", lambda best, error: published.append((best, error)))
    search = Listed([{"margin": 0.2}, {"margin": 0.8}])
    searcher = cell(search, publisher="test-best")
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first == {"seed": 1, "lr": 1e-4, "margin": 0.2, "stage": "search"} and second["margin"] == 0.8
    searcher.on_trial_complete("b", finished(0.7))
    assert searcher.suggest("c") is None and published == []  # "a" still runs: no choice yet
    searcher.on_trial_complete("a", finished(0.5))
    assert published == [({"lr": 1e-4, "margin": 0.8}, None)]
    # Seed 1 trained the chosen config in full during the search: it stands as seed 1's final run.
    assert [searcher.suggest(t) for t in "def"] == [
        {"lr": 1e-4, "margin": 0.8, "seed": 2, "stage": "final"},
        {"lr": 1e-4, "margin": 0.8, "seed": 3, "stage": "final"},
        Searcher.FINISHED]
    assert [t for t, _ in search.told] == ["b", "a"]  # Optuna hears of its own trials only
    searcher.on_trial_complete("d", finished(0.6))  # a final trial: no second choice
    assert len(published) == 1


def test_a_search_trial_cut_short_does_not_stand_as_a_final_run():
    searcher = cell(Listed([{"margin": 0.2}]), trials=1)
    searcher.suggest("a")
    searcher.on_trial_complete("a", finished(0.5, epochs=1))
    assert [searcher.suggest(t)["seed"] for t in "bcd"] == [1, 2, 3]


def test_a_search_whose_every_trial_failed_publishes_the_failure_and_runs_no_seed():
    published = []
    register_publisher("test-failed", lambda best, error: published.append((best, error)))
    searcher = cell(Listed([{"margin": 0.2}]), trials=1, publisher="test-failed")
    searcher.suggest("a")
    searcher.on_trial_complete("a", None, error=True)
    assert published[0][0] is None and "every search trial of cloce_d K=8 failed" in str(published[0][1])
    assert searcher.suggest("b") == Searcher.FINISHED


def test_results_file_trials_count_and_its_final_runs_are_not_run_again():
    done = [{"status": "FINISHED", "val_micro_f1": 0.9, "seed": 1, "config": {"lr": 1e-4, "margin": 0.4},
             "history": [{}]}]  # cut short: seed 1 still needs its own final run
    searcher = cell(None, trials=0, done=done, finals_done={config_key({"lr": 1e-4, "margin": 0.4}): [3]})
    assert searcher.chosen["config"] == {"lr": 1e-4, "margin": 0.4}
    assert [searcher.suggest(t)["seed"] for t in "ab"] == [1, 2] and searcher.suggest("c") == Searcher.FINISHED


def test_nothing_to_search_runs_the_constants_on_every_seed():
    searcher = cell(None, trials=0, seeds=(1, 2))
    assert [searcher.suggest(t) for t in "abc"] == [
        {"lr": 1e-4, "seed": 1, "stage": "final"}, {"lr": 1e-4, "seed": 2, "stage": "final"}, Searcher.FINISHED]


def test_the_searcher_pickles_for_tune_restore_and_saves_its_state(tmp_path):
    searcher = cell(Listed([{"margin": 0.2}, {"margin": 0.8}]))
    searcher.suggest("a")
    restored = pickle.loads(pickle.dumps(searcher))
    assert restored.search_left == 1 and "a" in restored.live_search
    path = str(tmp_path / "searcher.pkl")
    searcher.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["searcher.pkl"]  # one file: Tune renames only that one
    fresh = cell(Listed([]))
    fresh.restore(path)
    assert fresh.search_left == 1 and fresh.live_search == searcher.live_search
    assert fresh.search.configs == [{"margin": 0.8}]  # the inner search's own state came back too


def test_asha_never_stops_a_final_trial():
    scheduler = asha_scheduler(epochs=4, grace_period=1)
    strong = SimpleNamespace(trial_id="strong", config={"stage": "search"})
    weak_final = SimpleNamespace(trial_id="final", config={"stage": "final"})
    weak_search = SimpleNamespace(trial_id="weak", config={"stage": "search"})
    for trial in (strong, weak_final, weak_search):
        scheduler.on_trial_add(None, trial)
    assert scheduler.on_trial_result(None, strong, {"epochs_done": 1, "best_val_micro_f1": 0.9}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, weak_final, {"epochs_done": 1, "best_val_micro_f1": 0.1}) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, weak_search, {"epochs_done": 1, "best_val_micro_f1": 0.1}) == TrialScheduler.STOP


def test_a_searcher_restored_from_a_state_older_than_the_tuners_trials_catches_up():
    """Tune writes its trial list before its searcher: a driver killed between the two restores
    a searcher that still waits for a search trial that has ended, and has not seen a final
    trial already started. reconcile() makes it agree with the trials instead of waiting forever."""
    stale = cell(Listed([{"margin": 0.2}, {"margin": 0.8}]))
    stale.suggest("a"), stale.suggest("b")
    stale.on_trial_complete("a", finished(0.5))  # saved here: "b" still live, no choice yet
    restored = pickle.loads(pickle.dumps(stale))
    trials = [SimpleNamespace(trial_id="a", status="TERMINATED", config={"seed": 1, "lr": 1e-4, "margin": 0.2, "stage": "search"},
                              last_result=finished(0.5)),
              SimpleNamespace(trial_id="b", status="TERMINATED", config={"seed": 1, "lr": 1e-4, "margin": 0.8, "stage": "search"},
                              last_result=finished(0.7)),
              SimpleNamespace(trial_id="c", status="PENDING", config={"lr": 1e-4, "margin": 0.8, "seed": 2, "stage": "final"},
                              last_result={})]
    restored.reconcile(trials)
    assert restored.chosen["config"] == {"lr": 1e-4, "margin": 0.8}
    # Seed 1 is the search's own run, seed 2 already has its trial: only seed 3 is left.
    assert restored.suggest("d")["seed"] == 3 and restored.suggest("e") == Searcher.FINISHED
    restored.reconcile(trials)  # again, at every step: nothing changes
    assert len(restored.records) == 2


def test_a_searcher_ahead_of_the_saved_trials_suggests_again_what_was_never_saved():
    searcher = cell(Listed([{"margin": 0.2}, {"margin": 0.8}, {"margin": 0.5}]))
    searcher.suggest("a"), searcher.suggest("b")
    # The trial list was saved before "b" existed: "b" is suggested again under a new id.
    searcher.reconcile([SimpleNamespace(trial_id="a", status="RUNNING", config={"stage": "search"}, last_result={})])
    assert "b" not in searcher.live_search and searcher.suggest("c")["margin"] == 0.5
    # A trial the inner search never suggested ("x", adopted from the Tuner) never reaches it.
    searcher.reconcile([SimpleNamespace(trial_id=t, status="RUNNING", config={"seed": 1, "lr": 1e-4, "margin": 0.2, "stage": "search"},
                                        last_result={}) for t in ("a", "c", "x")])
    for trial_id, val in (("a", 0.5), ("c", 0.6), ("x", 0.4)):
        searcher.on_trial_complete(trial_id, finished(val))
    assert [t for t, _ in searcher.search.told] == ["a", "c"]
    chosen_seed = searcher.suggest("d")["seed"]
    searcher.reconcile([])  # the final trial "d" was never saved either: its seed runs again
    assert searcher.suggest("e")["seed"] == chosen_seed


def test_a_tie_is_broken_by_the_configuration_not_by_the_order_trials_ended():
    from study.driver.cell_search import best_record

    one = {"status": "FINISHED", "val_micro_f1": 0.5, "config": {"lr": 1e-4, "margin": 0.2}}
    two = {"status": "FINISHED", "val_micro_f1": 0.5, "config": {"lr": 1e-4, "margin": 0.8}}
    assert best_record([one, two]) is best_record([two, one])


def test_a_limiter_restored_with_an_ended_trial_frees_its_place():
    from study.driver.pool import CellLimiter, register_slots

    register_slots("test-reconcile", None)
    searcher = cell(Listed([{"margin": 0.2}, {"margin": 0.8}]), publisher="test-limiter")
    limiter = CellLimiter(searcher, 1, "test-reconcile")
    assert limiter.suggest("a") is not None and limiter.suggest("b") is None  # one at a time
    limiter.reconcile([SimpleNamespace(trial_id="a", status="TERMINATED")])  # its end was never told
    assert limiter.suggest("b") is not None
