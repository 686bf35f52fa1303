"""A trial's fixed cost (issue 15): checkpoints on a time interval (a kill loses at most the
interval), the lean last-epoch checkpoint, the data set kept by a reused trial process, and
the per-trial clock of phases."""
from __future__ import annotations

import time

import pytest

from cloce.state import final_state, load_train_state, save_train_state
from cloce.train import train
from study.trial import phases
from study.trial import warm
from study.trial.checkpoint_schedule import CheckpointSchedule
from tests.test_train_loop import tiny_config, tiny_dataset


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def run_epochs(schedule: CheckpointSchedule, clock: FakeClock, durations: list[float]) -> list[int]:
    saved = []
    for epoch, seconds in enumerate(durations, start=1):
        clock.now += seconds
        if schedule.due(epoch, seconds):
            saved.append(epoch)
    return saved


def test_interval_zero_checkpoints_every_epoch():
    clock = FakeClock()
    assert run_epochs(CheckpointSchedule(0, 4, clock), clock, [1, 1, 1, 1]) == [1, 2, 3, 4]


def test_short_epochs_checkpoint_the_last_one_only():
    clock = FakeClock()
    assert run_epochs(CheckpointSchedule(60, 4, clock), clock, [5, 5, 5, 5]) == [4]


def test_epochs_longer_than_the_interval_each_checkpoint():
    clock = FakeClock()
    assert run_epochs(CheckpointSchedule(10, 3, clock), clock, [30, 30, 30]) == [1, 2, 3]


@pytest.mark.parametrize("durations", [[7] * 12, [3, 9, 4, 8, 2, 11, 6, 5, 9, 3], [4] * 30])
def test_a_kill_at_any_moment_loses_at_most_the_interval(durations):
    """Unsaved training when killed just before an epoch's checkpoint decision: never more
    than the interval while epochs are no longer than it (and their length changes slowly)."""
    every_s, clock = 20.0, FakeClock()
    schedule = CheckpointSchedule(every_s, len(durations), clock)
    last_saved = 0.0
    for epoch, seconds in enumerate(durations, start=1):
        clock.now += seconds
        assert clock.now - last_saved <= every_s + max(0.0, seconds - durations[epoch - 2] if epoch > 1 else 0.0)
        if schedule.due(epoch, seconds):
            last_saved = clock.now


def test_resuming_from_the_lean_last_epoch_state_tests_the_same(tiny_bert_config, tmp_path):
    """After the last epoch the checkpoint holds the best weights only (no optimiser state,
    a third of the bytes): a trial killed during its test resumes to the same result."""

    class KeepFinal:
        def on_epoch_end(self, record, pipeline, is_best, snapshot):
            if record.epoch == 2:
                full = save_train_state(snapshot(), tmp_path / "full")
                lean = save_train_state(final_state(snapshot()), tmp_path / "lean")
                self.sizes = [sum(f.stat().st_size for f in d.iterdir()) for d in (full, lean)]

    keep = KeepFinal()
    config = tiny_config(epochs=2)
    straight = train(config, tiny_dataset(), callbacks=[keep], backbone_config=tiny_bert_config)
    resumed = train(config, tiny_dataset(), backbone_config=tiny_bert_config, resume=load_train_state(tmp_path / "lean"))
    assert keep.sizes[1] < keep.sizes[0] / 2
    assert [r.epoch for r in resumed.history] == [1, 2]
    assert resumed.best_epoch == straight.best_epoch
    assert resumed.test_predictions == straight.test_predictions
    with pytest.raises(ValueError, match="after the last of 2 epochs"):
        train(tiny_config(epochs=3), tiny_dataset(), backbone_config=tiny_bert_config,
              resume=load_train_state(tmp_path / "lean"))


def test_a_reused_process_reads_the_data_set_once_until_a_file_changes(tiny_semeval_dir, monkeypatch):
    from cloce.config import DataConfig

    warm.clear()
    reads = []
    real = warm.load_dataset
    monkeypatch.setattr(warm, "load_dataset", lambda *a, **k: reads.append(1) or real(*a, **k))
    data = DataConfig(data_dir=str(tiny_semeval_dir))
    first = warm.dataset(data)
    assert warm.dataset(data) is first and len(reads) == 1
    train_file = next(path for name, path in first.files.items() if name == "train")
    with open(train_file, "a", encoding="utf-8"):
        pass
    import os

    stat = os.stat(train_file)
    os.utime(train_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert warm.dataset(data) is not first and len(reads) == 2
    warm.clear()


def test_phases_are_exclusive_and_add_up_to_the_trial():
    phases.reset()
    with phases.phase("train"):
        time.sleep(0.02)
        with phases.phase("checkpoint"):
            time.sleep(0.03)
    time.sleep(0.01)
    out = phases.report()
    assert 0.015 < out["phase_train_s"] < 0.05 and out["phase_checkpoint_s"] >= 0.03
    assert out["phase_other_s"] >= 0.01
    assert abs(out["phase_train_s"] + out["phase_checkpoint_s"] + out["phase_other_s"] - out["trial_s"]) < 1e-3
