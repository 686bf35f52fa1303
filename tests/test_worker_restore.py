"""A trial restored after it had reported its end (its driver killed in between) reports the
same end again from its final checkpoint instead of failing on it as a training checkpoint."""
from __future__ import annotations

import json
import math
from pathlib import Path

from study.trial.worker import FINAL_FILE, read_summary, report_ended


class Reports:
    """Stands in for RayReports: keeps each report and the summary its checkpoint carries."""

    def __init__(self):
        self.seen = []

    def report(self, metrics, checkpoint=None):
        carried = None
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                carried = read_summary(Path(directory))
        self.seen.append((metrics, carried))


SUMMARY = {"final": 1, "test_micro_f1": 0.5, "best_val_micro_f1": 0.4, "history": [{"epoch": 1}],
           "test_labels": {"gold": [1], "pred": [1]}}


def test_a_finished_trial_reports_its_summary_again_in_a_final_checkpoint(tmp_path):
    (tmp_path / FINAL_FILE).write_text(json.dumps(SUMMARY))
    ended = read_summary(tmp_path)
    reports = Reports()
    assert report_ended(reports, 0, ended) == SUMMARY
    [(metrics, carried)] = reports.seen
    assert metrics == {"final": 1, "test_micro_f1": 0.5, "best_val_micro_f1": 0.4} and carried == SUMMARY
    other = Reports()
    report_ended(other, 1, ended)
    assert other.seen == [(metrics, None)]  # other ranks report without a checkpoint


def test_a_failed_trial_stays_failed_and_a_training_checkpoint_is_not_an_end(tmp_path):
    reports = Reports()
    assert report_ended(reports, 0, {"error": "non-finite loss"}) == {"error": "non-finite loss"}
    [(metrics, carried)] = reports.seen
    assert metrics["failed"] == 1 and math.isnan(metrics["best_val_micro_f1"]) and carried == {"error": "non-finite loss"}
    (tmp_path / "train_state.json").write_text("{}")
    assert read_summary(tmp_path) is None
