"""A cell whose saved Tune state a killed driver left empty or cut short is found before
`Tuner.restore` accepts it, and set aside (study/driver/tune_state.py)."""
from __future__ import annotations

import json

from study.driver.tune_state import set_aside, unreadable_tune_state


def write_state(cell, experiment="{}", generator="{}", searcher=b"state"):
    cell.mkdir(parents=True, exist_ok=True)
    (cell / "experiment_state-2026-11-28_17-32-42.json").write_text(experiment)
    (cell / "search_gen_state-2026-11-28_17-32-42.json").write_text(generator)
    (cell / "searcher-state-2026-11-28_17-32-42.pkl").write_bytes(searcher)


def test_whole_state_files_are_readable(tmp_path):
    write_state(tmp_path / "cell", json.dumps({"trial_data": []}))
    assert unreadable_tune_state(tmp_path / "cell") is None


def test_an_empty_or_cut_short_state_file_is_named(tmp_path):
    write_state(tmp_path / "empty", experiment="", generator="", searcher=b"")  # as the killed driver left it
    assert unreadable_tune_state(tmp_path / "empty") == "experiment_state-2026-11-28_17-32-42.json is empty"
    write_state(tmp_path / "cut", generator='{"counter": 1, "sear')
    assert "search_gen_state-2026-11-28_17-32-42.json is cut short" in unreadable_tune_state(tmp_path / "cut")
    write_state(tmp_path / "pkl", searcher=b"")
    assert unreadable_tune_state(tmp_path / "pkl") == "searcher-state-2026-11-28_17-32-42.pkl is empty"


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
