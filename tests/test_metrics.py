import json

import pytest

from cloce.data.types import LabelMap
from cloce.metrics import (
    Evaluation,
    direction_report,
    evaluate,
    format_report,
    has_directed_labels,
    is_semeval_label_set,
    micro_prf,
    semeval_macro_f1,
)

CE12, CE21 = "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"
CW12 = "Component-Whole(e1,e2)"

TACRED_LIKE = LabelMap(("no_relation", "per:title", "org:founded"), "no_relation")
SEMEVAL = LabelMap(("Other", CE12, CE21, CW12), "Other")


def test_micro_prf_ignores_no_relation_in_precision_and_recall():
    # 3 non-NA predictions, 2 right; 3 non-NA gold, 2 found.
    p, r, f = micro_prf([0, 1, 1, 2], [1, 1, 0, 2], no_relation_id=0)
    assert p == pytest.approx(2 / 3)
    assert r == pytest.approx(2 / 3)
    assert f == pytest.approx(2 / 3)


def test_micro_prf_all_no_relation_predictions_score_zero():
    assert micro_prf([1, 2, 0], [0, 0, 0], no_relation_id=0) == (0.0, 0.0, 0.0)


def test_micro_prf_without_no_relation_counts_every_label():
    p, r, f = micro_prf([0, 1, 1, 2], [1, 1, 0, 2], no_relation_id=None)
    assert (p, r, f) == pytest.approx((0.5, 0.5, 0.5))


def test_evaluate_per_relation_rows_cover_every_label():
    ev = evaluate([0, 1, 1, 0], [1, 1, 0, 0], TACRED_LIKE)
    rows = {s.label: s for s in ev.per_relation}
    assert [s.label for s in ev.per_relation] == list(TACRED_LIKE.labels)
    title = rows["per:title"]
    assert (title.precision, title.recall, title.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert (title.support, title.predicted) == (2, 2)
    founded = rows["org:founded"]  # never seen, never predicted: a zero row, no error
    assert (founded.precision, founded.recall, founded.f1, founded.support, founded.predicted) == (0, 0, 0, 0, 0)


def test_evaluate_accuracy_counts_no_relation_hits():
    ev = evaluate([0, 1, 1, 0], [1, 1, 0, 0], TACRED_LIKE)
    assert ev.accuracy == pytest.approx(0.5)
    assert ev.n == 4


def test_semeval_wrong_direction_lowers_precision_and_recall_of_its_type():
    gold = [CE12, CE12, CW12, "Other"]
    pred = [CE12, CE21, CW12, "Other"]
    # Cause-Effect: 1 hit / 2 predicted, 1 hit / 2 gold -> F1 0.5; Component-Whole: F1 1.
    assert semeval_macro_f1(gold, pred) == pytest.approx((0.5 + 1.0) / 2)


def test_semeval_macro_excludes_other():
    gold = [CE12, "Other", "Other", "Other"]
    pred = [CE12, CE12, "Other", "Other"]
    # Cause-Effect: P 1/2, R 1 -> F1 2/3. Other (F1 0.8) must not enter the mean.
    assert semeval_macro_f1(gold, pred) == pytest.approx(2 / 3)


def test_semeval_macro_averages_over_types_present_in_gold():
    # As the official scorer: a subset without Component-Whole is not scored 1/9 for it.
    assert semeval_macro_f1([CE12, "Other"], [CE12, "Other"]) == pytest.approx(1.0)


def test_is_semeval_label_set():
    assert is_semeval_label_set(SEMEVAL.labels)
    assert not is_semeval_label_set(TACRED_LIKE.labels)
    assert not is_semeval_label_set((CE12, CW12))  # no Other


def test_evaluate_reports_semeval_macro_only_for_semeval_labels():
    semeval = evaluate([1, 1, 3, 0], [1, 2, 3, 0], SEMEVAL)
    assert semeval.macro_f1_semeval == pytest.approx(0.75)
    assert "macro_f1_semeval" in semeval.summary()
    tacred = evaluate([0, 1], [0, 1], TACRED_LIKE)
    assert tacred.macro_f1_semeval is None
    assert set(tacred.summary()) == {"micro_f1", "micro_precision", "micro_recall", "accuracy"}


def test_evaluate_rejects_length_mismatch():
    with pytest.raises(ValueError, match="gold has 3 items but pred has 2"):
        evaluate([0, 1, 2], [0, 1], TACRED_LIKE)


def test_evaluate_rejects_out_of_range_id():
    with pytest.raises(ValueError, match=r"pred_ids\[1\] = 3"):
        evaluate([0, 1], [0, 3], TACRED_LIKE)


def test_to_dict_survives_json_round_trip():
    ev = evaluate([1, 1, 3, 0], [1, 2, 3, 0], SEMEVAL)
    obj = json.loads(json.dumps(ev.to_dict()))
    assert obj == ev.to_dict()
    assert obj["per_relation"][1]["label"] == CE12
    assert Evaluation.from_dict(obj) == ev


def test_format_report_has_a_row_per_label_and_the_summary():
    ev = evaluate([0, 1, 1, 2], [1, 1, 0, 2], TACRED_LIKE)
    report = format_report(ev)
    lines = report.splitlines()
    assert lines[0].split() == ["relation", "precision", "recall", "f1", "support", "predicted"]
    assert lines[2].split() == ["no_relation", "0.0000", "0.0000", "0.0000", "1", "1"]
    assert "micro_f1" in report and "0.6667" in report
    assert len({len(line) for line in lines[:5]}) == 1  # fixed width


# --- direction: right type, wrong direction -------------------------------------------------

def test_direction_report_counts_right_type_wrong_direction():
    # gold CE12 x3, CW12, Other; one CE12 predicted CE21 (wrong direction), one CE12 predicted CW12
    # (wrong type, not a direction error), one Other predicted CE12 (gold not directed).
    gold = [CE12, CE12, CE12, CW12, "Other"]
    pred = [CE12, CE21, CW12, CW12, CE12]
    report = direction_report(gold, pred)
    assert (report.directed, report.wrong_direction) == (4, 1)
    assert report.wrong_direction_rate == pytest.approx(1 / 4)
    assert report.undirected_accuracy == pytest.approx(3 / 5)  # CE21 for CE12 counts as a hit


def test_evaluate_reports_direction_only_for_directed_labels():
    semeval = evaluate([1, 1, 3, 0], [1, 2, 3, 0], SEMEVAL)
    assert semeval.direction.wrong_direction == 1 and semeval.direction.directed == 3
    assert semeval.accuracy == pytest.approx(0.75) and semeval.direction.undirected_accuracy == pytest.approx(1.0)
    assert semeval.summary()["wrong_direction_rate"] == pytest.approx(1 / 3)
    assert "wrong_direction" in format_report(semeval) and "1 of 3 directed gold" in format_report(semeval)
    tacred = evaluate([0, 1], [0, 2], TACRED_LIKE)
    assert tacred.direction is None and "wrong_direction" not in format_report(tacred)
    assert has_directed_labels(SEMEVAL.labels) and not has_directed_labels(TACRED_LIKE.labels)


def test_evaluations_written_before_the_direction_report_still_load():
    ev = evaluate([1, 1, 3, 0], [1, 2, 3, 0], SEMEVAL)
    old = ev.to_dict()
    del old["direction"]
    assert Evaluation.from_dict(old).direction is None
    assert Evaluation.from_dict(json.loads(json.dumps(ev.to_dict()))).direction == ev.direction
