"""Resume checkpoints (Ray Train's per-epoch state): safetensors + JSON only, clear errors."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from cloce.state import TrainState, TrainStateError, load_train_state, save_train_state

STRUCTURE, TENSORS = "train_state.json", "train_state.safetensors"


@pytest.fixture
def saved(tmp_path):
    state = TrainState(
        epoch=2, model={"w": torch.ones(3)}, best_model={"w": torch.zeros(3)}, best_epoch=1,
        best_val={"micro_f1": 0.5}, optimizers={"ce": {"state": {0: {"step": torch.tensor(4.0)}}}},
        rng={"torch": torch.get_rng_state()}, history=[{"epoch": 1}, {"epoch": 2}],
    )
    return save_train_state(state, tmp_path / "state")


def test_round_trip_keeps_tensors_and_int_keys(saved):
    state = load_train_state(saved)
    assert state.epoch == 2 and torch.equal(state.model["w"], torch.ones(3))
    assert state.optimizers["ce"]["state"][0]["step"].item() == 4.0


def test_files_are_the_expected_ones(saved):
    assert sorted(p.name for p in saved.iterdir()) == sorted([STRUCTURE, TENSORS])


def test_truncated_tensors_name_the_file(saved):
    path = saved / TENSORS
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(TrainStateError, match=f"{TENSORS}.*truncated or tampered"):
        load_train_state(saved)


def test_a_structure_that_points_at_missing_tensors_is_refused(saved):
    skeleton = json.loads((saved / STRUCTURE).read_text())
    skeleton["model"] = {"__dict__": [["w", {"__tensor__": "elsewhere.w"}]]}
    (saved / STRUCTURE).write_text(json.dumps(skeleton))
    with pytest.raises(TrainStateError, match="do not match"):
        load_train_state(saved)


def test_damaged_json_names_the_file(saved):
    (saved / STRUCTURE).write_text('{"epoch": 2,')
    with pytest.raises(TrainStateError, match=f"{STRUCTURE}: not valid JSON"):
        load_train_state(saved)


def test_a_pickled_state_is_never_opened(saved, monkeypatch):
    (saved / TENSORS).unlink()
    (saved / "train_state.pt").write_bytes(pickle.dumps({"epoch": 2}))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    with pytest.raises(TrainStateError, match=f"{TENSORS}: missing"):
        load_train_state(saved)


def test_best_weights_equal_to_the_current_ones_are_stored_once(tmp_path):
    state = TrainState(epoch=3, model={"w": torch.ones(1000)}, best_model={"w": torch.ones(1000)}, best_epoch=3,
                       best_val={}, optimizers={}, rng={}, history=[])
    once = save_train_state(state, tmp_path / "once")
    twice = save_train_state(TrainState(**(vars(state) | {"best_epoch": 2})), tmp_path / "twice")
    assert (once / TENSORS).stat().st_size < 0.6 * (twice / TENSORS).stat().st_size
    loaded = load_train_state(once)
    assert torch.equal(loaded.best_model["w"], loaded.model["w"])
    assert loaded.best_model["w"].data_ptr() != loaded.model["w"].data_ptr()  # training the model must not move the best
