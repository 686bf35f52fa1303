"""Stage-level decisions of the study that need no Ray runtime."""
from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import TrialScheduler

from study.driver.cells import OBJECTIVE, asha_scheduler


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


FIXED_LR = """
[study]
name = "fixed"
variants = ["prompt_ki", "cloce_d"]
ks = [8]
seeds = [1, 2]

[search]
num_samples = 4

[spaces.prompt_ki]
lr = 1.5e-4

[spaces.cloce_d]
lr = "prompt_ki"
margin = 0.5
"""


def test_a_cell_with_nothing_to_search_has_no_search_space_and_its_fixed_values_reach_the_trials(tmp_path):
    from ray.tune.search.sample import Float

    from study.configuration.study_file import load_study_config
    from study.driver.cells import search_space

    path = tmp_path / "fixed.toml"
    path.write_text(FIXED_LR)
    study = load_study_config(path)
    assert study.searched("prompt_ki") == {} and study.default_hyperparams("prompt_ki") == {"lr": 1.5e-4}
    space = search_space(study, "cloce_d") | {"lr": 1.5e-4}  # the inherited lr, as run_cell_stages adds it
    assert space["margin"] == 0.5 and isinstance(space["cl_lr"], Float) and set(space) == {"seed", "lr", "cl_lr", "margin"}
