"""Finished trials' checkpoints are deleted; a failed trial keeps its own for a retry."""
from dataclasses import dataclass, field

from ray.train import Checkpoint

from study.trial.checkpoint_cleanup import discard_finished_checkpoints


@dataclass
class FakeResult:  # the fields of ray.tune.Result that the cleanup reads
    checkpoint: Checkpoint | None
    error: Exception | None = None
    metrics: dict = field(default_factory=dict)
    best_checkpoints: list = field(default_factory=list)
    path: str | None = None  # the trial's directory


def checkpoint_dir(root, name):
    path = root / name
    path.mkdir()
    (path / "model.pt").write_bytes(b"0" * 16)
    return Checkpoint.from_directory(str(path))


def test_only_the_checkpoints_of_finished_trials_are_deleted(tmp_path):
    finished = checkpoint_dir(tmp_path, "checkpoint_finished")
    raised = checkpoint_dir(tmp_path, "checkpoint_raised")
    nan = checkpoint_dir(tmp_path, "checkpoint_nan")
    grid = [FakeResult(finished, best_checkpoints=[(finished, {})]),
            FakeResult(raised, error=RuntimeError("killed")),
            FakeResult(nan, metrics={"error": "loss is NaN"}),
            FakeResult(None)]
    assert discard_finished_checkpoints(grid) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_nan", "checkpoint_raised"]


def test_a_checkpoint_tune_no_longer_lists_is_deleted_from_a_finished_trials_directory(tmp_path):
    finished, failed = tmp_path / "finished_trial", tmp_path / "failed_trial"
    finished.mkdir(), failed.mkdir()
    latest = checkpoint_dir(finished, "checkpoint_000001")
    checkpoint_dir(finished, "checkpoint_000000")  # saved before a driver kill, unknown to the restored trial
    kept = checkpoint_dir(failed, "checkpoint_000000")
    (finished / "result.json").write_text("{}")
    grid = [FakeResult(latest, path=str(finished)), FakeResult(kept, error=RuntimeError("killed"), path=str(failed))]
    assert discard_finished_checkpoints(grid) == 2
    assert [p.name for p in finished.iterdir()] == ["result.json"]
    assert [p.name for p in failed.iterdir()] == ["checkpoint_000000"]


class FakeGrid(list):  # a ResultGrid: its results, and the experiment's directory
    def __init__(self, results, experiment_path):
        super().__init__(results)
        self.experiment_path = experiment_path


def test_a_trial_the_killed_driver_never_saved_loses_its_checkpoint(tmp_path):
    """Killed mid-trial before Tune saved it, a final trial is run again as a new trial by the
    restored cell: the old one's directory is in no result, and nothing resumes from it."""
    orphan, again, failed = tmp_path / "final_seed2_old", tmp_path / "final_seed2_new", tmp_path / "failed"
    for directory in (orphan, again, failed):
        directory.mkdir()
    checkpoint_dir(orphan, "checkpoint_000000")
    latest = checkpoint_dir(again, "checkpoint_000001")
    kept = checkpoint_dir(failed, "checkpoint_000000")
    grid = FakeGrid([FakeResult(latest), FakeResult(kept, error=RuntimeError("killed"), path=str(failed))],
                    str(tmp_path))
    assert discard_finished_checkpoints(grid) == 2
    assert list(orphan.iterdir()) == [] and list(again.iterdir()) == []
    assert [p.name for p in failed.iterdir()] == ["checkpoint_000000"]
