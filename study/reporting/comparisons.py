"""Paired comparisons of two variants from finished stage-2 trials: is CLoCE better than
prompt_ki (and prompt_ki than prompt) by more than the seeds and the test sentences explain?

- Over the seeds: a seed draws the same K-shot sample for every variant, so the test micro-F1
  differences (variant − reference) pair by seed. Their mean, sample std, a paired t-test
  (two-sided p) and the t 95% interval of the mean difference.
- Over the test sentences: every run of a study is tested on the same sentences, so per seed a
  paired bootstrap draws the sentences with replacement (the same draw for both variants),
  recomputes both micro-F1 and takes the difference: 1,000 resamples by default, seeded by
  (BOOTSTRAP_SEED, K, seed), the 2.5 and 97.5 percentiles as the 95% interval. It needs each
  trial's ``test_labels`` (gold and predicted label ids per sentence); records without them
  (older results files) get no interval.

Differences are fractions in the numeric frames (CSV) and percentage points in the markdown.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from study.reporting.tables import Row, finished_rows, k_label, sorted_cells, to_markdown

RESAMPLES = 1000
BOOTSTRAP_SEED = 0
REFERENCE = "prompt_ki"

SEED_SCHEMA: dict[str, pl.DataType] = {
    "variant": pl.String, "reference": pl.String, "k": pl.Int64, "seed": pl.Int64,
    "variant_test_micro_f1": pl.Float64, "reference_test_micro_f1": pl.Float64, "difference": pl.Float64,
    "sentences": pl.Int64, "bootstrap_low": pl.Float64, "bootstrap_high": pl.Float64, "bootstrap_note": pl.String,
}


def default_pairs(variants: Sequence[str]) -> list[tuple[str, str]]:
    """(variant, reference): each cloce_* against prompt_ki (what the contrastive step adds),
    and prompt_ki against prompt (what the type tokens add), where both are present."""
    present = list(dict.fromkeys(variants))
    pairs = [(v, REFERENCE) for v in present if v.startswith("cloce_") and REFERENCE in present]
    if REFERENCE in present and "prompt" in present:
        pairs.append((REFERENCE, "prompt"))
    return pairs


# ---------------------------------------------------------------- statistics

@dataclass(frozen=True)
class PairedT:
    n: int
    mean: float
    std: float | None  # sample std of the differences
    t: float | None
    p: float | None  # two-sided
    low: float | None  # t 95% interval of the mean difference
    high: float | None


def paired_t(differences: Sequence[float]) -> PairedT:
    """The paired t-test of `differences` (one per seed) against 0. Differences that are all
    equal have no spread: p is 1 when they are 0, else 0, and the interval is the point."""
    n = len(differences)
    if n == 0:
        return PairedT(0, math.nan, None, None, None, None, None)
    mean = float(np.mean(differences))
    if n < 2:
        return PairedT(n, mean, None, None, None, None, None)
    std = float(np.std(differences, ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):  # float noise of equal differences is no spread
        return PairedT(n, mean, 0.0, None, 1.0 if mean == 0 else 0.0, mean, mean)
    se = std / math.sqrt(n)
    t = mean / se
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return PairedT(n, mean, std, t, float(2 * stats.t.sf(abs(t), n - 1)), mean - half, mean + half)


def _sentence_counts(labels: Mapping[str, object]) -> np.ndarray:
    """Per sentence (correct, predicted, relevant) as the TACRED scorer counts them: a
    no-relation prediction is no prediction, a no-relation gold nothing to find."""
    gold, pred = np.asarray(labels["gold"]), np.asarray(labels["pred"])
    none = labels.get("no_relation_id")
    predicted = pred != none if none is not None else np.ones(len(pred), dtype=bool)
    relevant = gold != none if none is not None else np.ones(len(gold), dtype=bool)
    return np.stack([predicted & (pred == gold), predicted, relevant], axis=1).astype(np.int64)


def _micro_f1(totals: np.ndarray) -> np.ndarray:
    """F1 = 2 correct / (predicted + relevant), 0 where both are 0; totals [..., 3]."""
    denominator = totals[..., 1] + totals[..., 2]
    return np.divide(2.0 * totals[..., 0], denominator, out=np.zeros(denominator.shape), where=denominator > 0)


@dataclass(frozen=True)
class Bootstrap:
    sentences: int
    difference: float  # micro-F1(variant) - micro-F1(reference) on all the sentences
    low: float  # 2.5th percentile of the resampled differences
    high: float  # 97.5th


def paired_bootstrap(variant: Mapping[str, object], reference: Mapping[str, object],
                     resamples: int = RESAMPLES, seed: int | Sequence[int] = BOOTSTRAP_SEED) -> Bootstrap:
    """Micro-F1 difference over the same test sentences and its 95% percentile interval:
    `resamples` draws of the sentences with replacement, each scored for both variants."""
    if list(variant["gold"]) != list(reference["gold"]) or variant.get("no_relation_id") != reference.get("no_relation_id"):
        raise ValueError("the two runs were not tested on the same sentences (their gold labels differ)")
    a, b = _sentence_counts(variant), _sentence_counts(reference)
    n = len(a)
    if n == 0:
        raise ValueError("no test sentences")
    rng = np.random.default_rng(seed)
    differences = np.empty(resamples)
    for start in range(0, resamples, 100):  # 100 draws at a time: n x 100 indices in memory
        draw = rng.integers(0, n, size=(min(100, resamples - start), n))
        differences[start:start + len(draw)] = _micro_f1(a[draw].sum(axis=1)) - _micro_f1(b[draw].sum(axis=1))
    low, high = np.percentile(differences, [2.5, 97.5])
    observed = float(_micro_f1(a.sum(axis=0)) - _micro_f1(b.sum(axis=0)))
    return Bootstrap(n, observed, float(low), float(high))


# ---------------------------------------------------------------- frames

def comparison_seeds(rows: Sequence[Row], pairs: Sequence[tuple[str, str]],
                     seeds: Sequence[int] | None = None, resamples: int = RESAMPLES) -> pl.DataFrame:
    """One row per (variant, reference, K, seed) where both finished: their test micro-F1, the
    difference, and the bootstrap interval over test sentences (null, with a note, when a
    trial carries no per-sentence labels or the two were tested on different sentences)."""
    done = {(r["variant"], r["k"], r["seed"]): r for r in finished_rows(rows)
            if seeds is None or r["seed"] in set(seeds)}
    records = []
    for variant, reference in pairs:
        for (name, k, seed), row in sorted(done.items(), key=lambda item: (item[0][1], item[0][2])):
            other = done.get((reference, k, seed))
            if name != variant or other is None:
                continue
            record = {"variant": variant, "reference": reference, "k": k, "seed": seed,
                      "variant_test_micro_f1": row["test_micro_f1"], "reference_test_micro_f1": other["test_micro_f1"],
                      "difference": row["test_micro_f1"] - other["test_micro_f1"],
                      "sentences": None, "bootstrap_low": None, "bootstrap_high": None, "bootstrap_note": None}
            if not row.get("test_labels") or not other.get("test_labels"):
                record["bootstrap_note"] = "no per-sentence test labels"
            else:
                try:
                    boot = paired_bootstrap(row["test_labels"], other["test_labels"], resamples, [BOOTSTRAP_SEED, k, seed])
                except ValueError as err:
                    record["bootstrap_note"] = str(err)
                else:
                    record |= {"sentences": boot.sentences, "bootstrap_low": boot.low, "bootstrap_high": boot.high}
            records.append(record)
    if not records:
        return pl.DataFrame(schema=SEED_SCHEMA)
    return pl.DataFrame(records, schema=SEED_SCHEMA, orient="row")


def comparison_numbers(seed_rows: pl.DataFrame, variants: Sequence[str] | None = None) -> pl.DataFrame:
    """Per (variant, reference, K), from ``comparison_seeds``: the paired t over seeds (mean,
    std, t, p, 95% interval of the mean difference) and how many seeds' bootstrap intervals
    lie wholly above or below 0."""
    records = []
    for (variant, reference, k), cell in seed_rows.group_by(["variant", "reference", "k"], maintain_order=True):
        test = paired_t(cell["difference"].to_list())
        booted = cell.filter(pl.col("bootstrap_low").is_not_null())
        records.append({
            "variant": variant, "reference": reference, "k": k, "seeds": test.n,
            "mean_difference": test.mean, "std_difference": test.std, "t_low": test.low, "t_high": test.high,
            "t_statistic": test.t, "p_value": test.p, "bootstrapped_seeds": booted.height,
            "seeds_above_zero": booted.filter(pl.col("bootstrap_low") > 0).height,
            "seeds_below_zero": booted.filter(pl.col("bootstrap_high") < 0).height,
        })
    schema = {"variant": pl.String, "reference": pl.String, "k": pl.Int64, "seeds": pl.Int64,
              "mean_difference": pl.Float64, "std_difference": pl.Float64, "t_low": pl.Float64, "t_high": pl.Float64,
              "t_statistic": pl.Float64, "p_value": pl.Float64, "bootstrapped_seeds": pl.Int64,
              "seeds_above_zero": pl.Int64, "seeds_below_zero": pl.Int64}
    frame = pl.DataFrame(records, schema=schema, orient="row") if records else pl.DataFrame(schema=schema)
    return sorted_cells(frame, variants, "reference")


def _points(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:+.1f}"


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None else f"[{_points(low)}, {_points(high)}]"


def comparison_display(numbers: pl.DataFrame, seed_rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Both frames for reading, differences in percentage points: per cell, then per seed."""
    cells = pl.DataFrame(
        {"comparison": [f"{v} − {r}" for v, r in zip(numbers["variant"], numbers["reference"])],
         "K": [k_label(k) for k in numbers["k"]],
         "seeds": numbers["seeds"].to_list(),
         "mean diff (pp)": [_points(v) for v in numbers["mean_difference"]],
         "95% t interval": [_interval(lo, hi) for lo, hi in zip(numbers["t_low"], numbers["t_high"])],
         "paired t p": ["" if p is None else f"{p:.3g}" for p in numbers["p_value"]],
         "bootstrap: seeds > 0 / < 0": [f"{a} / {b} of {n}" for a, b, n in zip(
             numbers["seeds_above_zero"], numbers["seeds_below_zero"], numbers["bootstrapped_seeds"])]},
        schema={name: pl.Int64 if name == "seeds" else pl.String for name in
                ("comparison", "K", "seeds", "mean diff (pp)", "95% t interval", "paired t p", "bootstrap: seeds > 0 / < 0")},
    )
    seeds = pl.DataFrame(
        {"comparison": [f"{v} − {r}" for v, r in zip(seed_rows["variant"], seed_rows["reference"])],
         "K": [k_label(k) for k in seed_rows["k"]],
         "seed": seed_rows["seed"].to_list(),
         "variant micro-F1": [f"{100 * v:.1f}" for v in seed_rows["variant_test_micro_f1"]],
         "reference micro-F1": [f"{100 * v:.1f}" for v in seed_rows["reference_test_micro_f1"]],
         "diff (pp)": [_points(v) for v in seed_rows["difference"]],
         "bootstrap 95% interval (pp)": [_interval(lo, hi) or (note or "") for lo, hi, note in zip(
             seed_rows["bootstrap_low"], seed_rows["bootstrap_high"], seed_rows["bootstrap_note"])],
         "sentences": seed_rows["sentences"].to_list()},
        schema={"comparison": pl.String, "K": pl.String, "seed": pl.Int64, "variant micro-F1": pl.String,
                "reference micro-F1": pl.String, "diff (pp)": pl.String, "bootstrap 95% interval (pp)": pl.String,
                "sentences": pl.Int64},
    )
    return cells, seeds


def comparison_frames(rows: Sequence[Row], variants: Sequence[str], seeds: Sequence[int],
                      pairs: Sequence[tuple[str, str]] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per-cell numbers, per-seed rows): the bootstrap runs here, so compute them once and
    hand them to `write_comparisons` and `comparison_display`."""
    seed_rows = comparison_seeds(rows, default_pairs(variants) if pairs is None else pairs, seeds)
    seed_rows = sorted_cells(seed_rows, variants, "reference", "seed")
    return comparison_numbers(seed_rows, variants), seed_rows


def comparison_table(rows: Sequence[Row], variants: Sequence[str], seeds: Sequence[int],
                     pairs: Sequence[tuple[str, str]] | None = None) -> pl.DataFrame:
    """The per-cell comparisons for reading (the first table of comparisons.md)."""
    return comparison_display(*comparison_frames(rows, variants, seeds, pairs))[0]


def write_comparisons(rows: Sequence[Row], variants: Sequence[str], seeds: Sequence[int], out_dir: str | Path,
                      pairs: Sequence[tuple[str, str]] | None = None,
                      frames: tuple[pl.DataFrame, pl.DataFrame] | None = None) -> dict[str, Path]:
    """comparisons.md (both tables), comparisons.csv (per cell) and comparison_seeds.csv
    (per seed) under ``out_dir``; pairs default to ``default_pairs(variants)``; `frames`:
    `comparison_frames` already computed."""
    out = Path(out_dir)
    numbers, seed_rows = frames or comparison_frames(rows, variants, seeds, pairs)
    cells, per_seed = comparison_display(numbers, seed_rows)
    paths = {name: out / name for name in ("comparisons.md", "comparisons.csv", "comparison_seeds.csv")}
    paths["comparisons.md"].write_text(
        f"Paired comparisons (variant − reference, test micro-F1, percentage points): t-test over seeds; "
        f"per seed a paired bootstrap over the test sentences ({RESAMPLES} resamples), 95% interval.\n\n"
        + to_markdown(cells) + "\n" + to_markdown(per_seed), encoding="utf-8")
    numbers.write_csv(paths["comparisons.csv"])
    seed_rows.write_csv(paths["comparison_seeds.csv"])
    return paths
