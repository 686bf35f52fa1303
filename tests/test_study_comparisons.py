"""Paired comparisons of two variants from hand-made trial records whose answer is known:
a paired t-test over seeds, a paired bootstrap over test sentences."""
from __future__ import annotations

import random

import polars as pl
import pytest
from scipy import stats

from cloce.metrics import micro_prf
from study.reporting.comparisons import (
    comparison_numbers,
    comparison_seeds,
    comparison_table,
    default_pairs,
    paired_bootstrap,
    paired_t,
    write_comparisons,
)

GOLD = [0, 1, 2, 1, 0, 2, 1, 1, 0, 2] * 20  # 200 sentences, 0 = no_relation


def labels(pred, gold=GOLD):
    return {"gold": list(gold), "pred": list(pred), "no_relation_id": 0}


def noisy(seed, right=0.6):
    """Predictions right on about `right` of the sentences, wrong (another label) elsewhere."""
    rng = random.Random(seed)
    return [g if rng.random() < right else (g + 1) % 3 for g in GOLD]


def micro_f1(pred):
    return micro_prf(GOLD, pred, 0)[2]


def record(variant, k, seed, pred, with_labels=True):
    return {"variant": variant, "k": k, "seed": seed, "status": "FINISHED", "test_micro_f1": micro_f1(pred),
            "test_labels": labels(pred) if with_labels else None, "history": []}


def test_identical_predictions_differ_by_zero_with_a_zero_interval():
    pred = noisy(1)
    boot = paired_bootstrap(labels(pred), labels(pred))
    assert (boot.difference, boot.low, boot.high) == (0.0, 0.0, 0.0)
    assert boot.sentences == len(GOLD)
    test = paired_t([0.0, 0.0, 0.0])
    assert (test.mean, test.p, test.low, test.high) == (0.0, 1.0, 0.0, 0.0)


def test_right_wherever_the_reference_is_wrong_gives_an_interval_above_zero():
    reference = noisy(2)
    boot = paired_bootstrap(labels(GOLD), labels(reference))  # the variant is right on every sentence
    assert boot.difference == pytest.approx(1.0 - micro_f1(reference))
    assert 0 < boot.low < boot.difference < boot.high
    flipped = paired_bootstrap(labels(reference), labels(GOLD))
    assert flipped.high < 0


def test_bootstrap_difference_is_the_micro_f1_difference_and_the_draw_is_seeded():
    a, b = noisy(3, 0.7), noisy(4, 0.5)
    boot = paired_bootstrap(labels(a), labels(b), resamples=300, seed=[0, 8, 1])
    assert boot.difference == pytest.approx(micro_f1(a) - micro_f1(b))
    assert boot == paired_bootstrap(labels(a), labels(b), resamples=300, seed=[0, 8, 1])
    assert boot != paired_bootstrap(labels(a), labels(b), resamples=300, seed=[0, 8, 2])
    assert boot.low < boot.difference < boot.high


def test_bootstrap_refuses_runs_tested_on_different_sentences():
    with pytest.raises(ValueError, match="not tested on the same sentences"):
        paired_bootstrap(labels(GOLD), labels(GOLD[:-1], gold=GOLD[:-1]))


def test_paired_t_is_scipys_paired_t_test():
    variant, reference = [0.42, 0.45, 0.40, 0.47, 0.44], [0.40, 0.41, 0.41, 0.43, 0.40]
    test = paired_t([v - r for v, r in zip(variant, reference)])
    expected = stats.ttest_rel(variant, reference)
    assert test.t == pytest.approx(expected.statistic)
    assert test.p == pytest.approx(expected.pvalue)
    assert test.low < test.mean < test.high
    assert (test.high - test.low) / 2 == pytest.approx(stats.t.ppf(0.975, 4) * test.std / 5 ** 0.5)
    assert paired_t([0.02]).p is None  # one seed: no test


def test_default_pairs_compare_cloce_with_prompt_ki_and_prompt_ki_with_prompt():
    assert default_pairs(["finetune", "prompt", "prompt_ki", "cloce_s", "cloce_d"]) == [
        ("cloce_s", "prompt_ki"), ("cloce_d", "prompt_ki"), ("prompt_ki", "prompt")]
    assert default_pairs(["finetune", "cloce_d"]) == []


@pytest.fixture
def rows():
    out = []
    for seed in (1, 2, 3):
        reference = noisy(10 + seed)
        out += [record("prompt_ki", 8, seed, reference), record("cloce_d", 8, seed, GOLD)]
        out += [record("prompt_ki", 16, seed, reference), record("cloce_d", 16, seed, reference)]
    out.append(record("cloce_d", 8, 4, GOLD))  # its reference never finished: left out
    return out


def test_seed_rows_pair_by_seed_and_carry_the_bootstrap(rows):
    seeds = comparison_seeds(rows, [("cloce_d", "prompt_ki")], resamples=200)
    assert seeds.filter(pl.col("k") == 8)["seed"].to_list() == [1, 2, 3]
    k8 = seeds.filter(pl.col("k") == 8)
    assert (k8["bootstrap_low"] > 0).all() and (k8["difference"] > 0).all()
    k16 = seeds.filter(pl.col("k") == 16)
    assert k16["difference"].to_list() == [0.0] * 3
    assert k16["bootstrap_low"].to_list() == k16["bootstrap_high"].to_list() == [0.0] * 3


def test_cell_numbers_hold_the_paired_t_and_the_seeds_above_zero(rows):
    numbers = comparison_numbers(comparison_seeds(rows, [("cloce_d", "prompt_ki")], resamples=200))
    k8 = numbers.filter(pl.col("k") == 8).row(0, named=True)
    assert k8["seeds"] == 3 and k8["bootstrapped_seeds"] == 3
    assert (k8["seeds_above_zero"], k8["seeds_below_zero"]) == (3, 0)
    assert k8["p_value"] < 0.05 and k8["t_low"] > 0
    k16 = numbers.filter(pl.col("k") == 16).row(0, named=True)
    assert (k16["mean_difference"], k16["p_value"], k16["seeds_above_zero"]) == (0.0, 1.0, 0)


def test_records_without_per_sentence_labels_get_the_t_test_but_no_interval(rows):
    older = [r | {"test_labels": None} if r["variant"] == "prompt_ki" else r for r in rows]
    seeds = comparison_seeds(older, [("cloce_d", "prompt_ki")])
    assert seeds["bootstrap_low"].null_count() == seeds.height
    assert set(seeds["bootstrap_note"]) == {"no per-sentence test labels"}
    numbers = comparison_numbers(seeds)
    assert numbers["bootstrapped_seeds"].to_list() == [0, 0] and numbers["p_value"].null_count() == 0


def test_expected_seeds_only(rows):
    assert comparison_seeds(rows, [("cloce_d", "prompt_ki")], seeds=[1, 2], resamples=50)["seed"].unique().sort().to_list() == [1, 2]


def test_write_comparisons_writes_markdown_and_csv(rows, tmp_path):
    paths = write_comparisons(rows, ["prompt_ki", "cloce_d"], [1, 2, 3], tmp_path)
    assert set(paths) == {"comparisons.md", "comparisons.csv", "comparison_seeds.csv"}
    text = paths["comparisons.md"].read_text()
    assert "| cloce_d − prompt_ki | 8 | 3 |" in text and "| seed |" in text
    assert pl.read_csv(paths["comparison_seeds.csv"]).height == 6
    table = comparison_table(rows, ["prompt_ki", "cloce_d"], [1, 2, 3])
    assert table["bootstrap: seeds > 0 / < 0"].to_list() == ["3 / 0 of 3", "0 / 0 of 3"]
    assert table["mean diff (pp)"][1] == "+0.0"


def test_no_pair_present_writes_empty_tables(tmp_path):
    paths = write_comparisons([record("finetune", 8, 1, GOLD)], ["finetune"], [1], tmp_path)
    assert pl.read_csv(paths["comparisons.csv"]).is_empty()
    assert comparison_table([], ["prompt_ki", "cloce_d"], [1]).is_empty()
