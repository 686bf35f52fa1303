"""Stage-level decisions of the study that need no Ray runtime."""
from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from study.stages import OBJECTIVE, asha_scheduler


def feed(scheduler, trial, reports):
    return [scheduler.on_trial_result(None, trial, {"epochs_done": e, OBJECTIVE: v}) for e, v in reports]


def test_asha_lets_a_trial_report_its_summary_after_the_last_epoch():
    scheduler = asha_scheduler(epochs=2, grace_period=1)
    trial = SimpleNamespace(trial_id="a")
    scheduler.on_trial_add(None, trial)
    # epoch 1, epoch 2, then the summary report (still epochs_done=2)
    assert feed(scheduler, trial, [(1, 0.5), (2, 0.6), (2, 0.6)]) == [TrialScheduler.CONTINUE] * 3


def test_asha_stops_a_weaker_trial_at_its_rung():
    scheduler = asha_scheduler(epochs=4, grace_period=1)
    strong, weak = SimpleNamespace(trial_id="strong"), SimpleNamespace(trial_id="weak")
    scheduler.on_trial_add(None, strong)
    scheduler.on_trial_add(None, weak)
    assert feed(scheduler, strong, [(1, 0.9)]) == [TrialScheduler.CONTINUE]
    assert feed(scheduler, weak, [(1, 0.1)]) == [TrialScheduler.STOP]
