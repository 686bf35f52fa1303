"""A cell whose saved Tune state a killed driver left empty or cut short is found before
`Tuner.restore` accepts it, and set aside (study/driver/tune_state.py)."""
from __future__ import annotations

import json

import ray.cloudpickle as cloudpickle

from study.driver.tune_state import set_aside, unreadable_tune_state


# Tune writes the generator's and the searcher's state with cloudpickle (the generator's file is named .json).
WHOLE_PICKLE = cloudpickle.dumps({"counter": 1, "searcher_state": list(range(50))})


def write_state(cell, experiment="{}", generator=WHOLE_PICKLE, searcher=WHOLE_PICKLE):
    cell.mkdir(parents=True, exist_ok=True)
    (cell / "experiment_state-2026-11-28_17-32-42.json").write_text(experiment)
    (cell / "search_gen_state-2026-11-28_17-32-42.json").write_bytes(generator)
    (cell / "searcher-state-2026-11-28_17-32-42.pkl").write_bytes(searcher)


def test_whole_state_files_are_readable(tmp_path):
    write_state(tmp_path / "cell", json.dumps({"trial_data": []}))
    assert unreadable_tune_state(tmp_path / "cell") is None


def test_an_empty_or_cut_short_state_file_is_named(tmp_path):
    write_state(tmp_path / "empty", experiment="", generator=b"", searcher=b"")  # as the killed driver left it
    assert unreadable_tune_state(tmp_path / "empty") == "experiment_state-2026-11-28_17-32-42.json is empty"
    write_state(tmp_path / "cut", generator=WHOLE_PICKLE[:20])
    assert "search_gen_state-2026-11-28_17-32-42.json is cut short" in unreadable_tune_state(tmp_path / "cut")
    write_state(tmp_path / "pkl", searcher=b"")
    assert unreadable_tune_state(tmp_path / "pkl") == "searcher-state-2026-11-28_17-32-42.pkl is empty"
    write_state(tmp_path / "cut_json", experiment='{"trial_data": [')
    assert "experiment_state-2026-11-28_17-32-42.json is cut short" in unreadable_tune_state(tmp_path / "cut_json")


def test_the_state_tune_really_writes_is_readable(tmp_path):
    """A searcher's state as Ray's own _atomic_save writes it (cloudpickle, in a .json file)."""
    from ray.tune.search.search_generator import SearchGenerator
    from ray.tune.utils.util import _atomic_save

    cell = tmp_path / "cell"
    write_state(cell, json.dumps({"trial_data": []}))
    name = SearchGenerator.CKPT_FILE_TMPL.format("2026-11-28_17-32-42")
    _atomic_save(state={"counter": 2}, checkpoint_dir=str(cell), file_name=name, tmp_file_name=".tmp_gen")
    assert unreadable_tune_state(cell) is None


def test_only_the_newest_state_counts(tmp_path):
    cell = tmp_path / "cell"
    write_state(cell, experiment="")
    (cell / "experiment_state-2026-11-28_18-00-00.json").write_text("{}")  # a later session's, whole
    assert unreadable_tune_state(cell) is None


def test_a_set_aside_cell_keeps_its_results_and_loses_its_checkpoints(tmp_path):
    cell = tmp_path / "tune" / "cell-cloce_s-K2"
    write_state(cell, experiment="")
    trial = cell / "cloce_cell_cloce_s_K2_a8216720_3"
    (trial / "checkpoint_000001").mkdir(parents=True)
    (trial / "result.json").write_text("{}")
    aside = set_aside(cell)
    assert not cell.exists() and aside.parent == cell.parent and aside.name.startswith("cell-cloce_s-K2.unreadable-")
    assert [p.name for p in (aside / trial.name).iterdir()] == ["result.json"]


def test_a_cell_killed_before_its_first_state_save_is_not_restorable(tmp_path):
    from ray import tune

    from study.driver.tune_state import has_saved_state

    cell = tmp_path / "cell"
    cell.mkdir()
    (cell / "tuner.pkl").write_bytes(b"x")  # what Tune writes before the first trial
    (cell / ".validate_storage_marker").touch()
    assert tune.Tuner.can_restore(str(cell))  # Tune's own check says yes
    assert not has_saved_state(cell)
    (cell / "experiment_state-2026-12-03_13-45-00.json").write_text("{}")
    assert has_saved_state(cell)
    assert not has_saved_state(tmp_path / "nowhere") and has_saved_state("s3://bucket/cell")
