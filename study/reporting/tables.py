"""Result tables from finished stage-2 trials: the paper's Table 3 (few-shot mean ± std over
seeds) and Table 4 / Figure 3 (validation F1 after each epoch, best epoch and its value).

Input rows are plain dicts, one per trial, as the study system produces them::

    {"variant": "cloce_d", "k": 16, "seed": 1, "status": "FINISHED",
     "val_micro_f1": 0.41, "test_micro_f1": 0.39, "test_macro_f1_semeval": None,
     "test_wrong_direction_rate": None, "test_undirected_accuracy": None,  # directed labels only
     "best_epoch": 4, "history": [{"epoch": 1, "val_micro_f1": 0.1, "train_loss": 2.3, ...}],
     "test_labels": {"gold": [...], "pred": [...], "no_relation_id": 0}}  # per test sentence

The paired comparisons of two variants (paired t over seeds, paired bootstrap over test
sentences) are in study/reporting/comparisons.py; study/reporting/files.py writes both.

Metrics are fractions; tables meant for reading show percent with one decimal, numeric
frames (CSV) keep fractions. ``k == 0`` is the full training set, labelled "full".
A trial counts only when it is FINISHED with a test micro-F1: failed, partial or absent
trials show up as "missing" cells and short seed counts, never as errors.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

Row = Mapping[str, object]

TRIAL_SCHEMA: dict[str, pl.DataType] = {
    "variant": pl.String, "k": pl.Int64, "seed": pl.Int64, "status": pl.String,
    "val_micro_f1": pl.Float64, "test_micro_f1": pl.Float64, "test_macro_f1_semeval": pl.Float64,
    "test_wrong_direction_rate": pl.Float64, "test_undirected_accuracy": pl.Float64,
    "best_epoch": pl.Int64, "epochs_run": pl.Int64,
}
EPOCH_SCHEMA: dict[str, pl.DataType] = {
    "variant": pl.String, "k": pl.Int64, "seed": pl.Int64, "epoch": pl.Int64,
    "val_micro_f1": pl.Float64, "train_loss": pl.Float64, "cl_loss": pl.Float64, "val_accuracy": pl.Float64,
}
CELL = ["variant", "k"]
MISSING = "missing"


def k_label(k: int) -> str:
    """How a K is written in headers: the shot count, or "full" for the full training set."""
    return "full" if k == 0 else str(k)


# ---------------------------------------------------------------- frames

def trial_frame(rows: Sequence[Row]) -> pl.DataFrame:
    """One row per trial with its scalar fields (``history`` becomes ``epochs_run``).

    Extra scalar keys (hyper-parameters, trial ids) are kept as further columns, so that
    ``trials.csv`` records what each trial ran with.
    """
    columns: dict[str, list] = {name: [] for name in TRIAL_SCHEMA}
    extras = [key for key in dict.fromkeys(key for row in rows for key in row)
              if key not in TRIAL_SCHEMA and key != "history"]
    extra_values: dict[str, list] = {key: [] for key in extras}
    for row in rows:
        for name in TRIAL_SCHEMA:
            columns[name].append(row.get(name) if name != "epochs_run" else len(row.get("history") or []))
        for key in extras:
            extra_values[key].append(row.get(key))
    frame = pl.DataFrame(columns, schema=TRIAL_SCHEMA)
    for key, values in extra_values.items():
        if all(value is None or isinstance(value, (str, int, float, bool)) for value in values):
            frame = frame.with_columns(_scalar_series(key, values))
    return frame


def _scalar_series(name: str, values: list) -> pl.Series:
    kinds = {type(value) for value in values if value is not None}
    if kinds <= {bool}:
        return pl.Series(name, values, dtype=pl.Boolean)
    if kinds <= {int}:
        return pl.Series(name, values, dtype=pl.Int64)
    if kinds <= {int, float}:
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    return pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.String)


def finished_rows(rows: Sequence[Row]) -> list[Row]:
    """Finished trials with a test score; a re-run of the same (variant, k, seed) keeps the last."""
    latest = {(row.get("variant"), row.get("k"), row.get("seed")): row for row in rows
              if row.get("status") == "FINISHED" and row.get("test_micro_f1") is not None}
    return list(latest.values())


def _finished(rows: Sequence[Row]) -> pl.DataFrame:
    return trial_frame(finished_rows(rows))


def sorted_cells(frame: pl.DataFrame, variants: Sequence[str] | None, *extra: str) -> pl.DataFrame:
    """Variants in the given order (any others after them, by name), K ascending, "full" last."""
    rank = {variant: i for i, variant in enumerate(dict.fromkeys(variants or []))}
    return (
        frame.with_columns(
            _variant_rank=pl.col("variant").replace_strict(rank, default=len(rank), return_dtype=pl.Int64),
            _k_rank=pl.when(pl.col("k") == 0).then(pl.lit(2**62)).otherwise(pl.col("k")),
        )
        .sort(["_variant_rank", "variant", "_k_rank", *extra])
        .drop("_variant_rank", "_k_rank")
    )


# ---------------------------------------------------------------- Table 3: few-shot

def _mean_std_cell(fractions: list[float]) -> str:
    if not fractions:
        return MISSING
    series = pl.Series([100.0 * value for value in fractions])
    if len(series) == 1:
        return f"{series.mean():.1f} (1 seed)"
    return f"{series.mean():.1f} ± {series.std(ddof=1):.1f}"


def fewshot_table(rows: Sequence[Row], variants: Sequence[str], ks: Sequence[int],
                  expected_seeds: Sequence[int], kshot_sets: str | None = None) -> pl.DataFrame:
    """Table 3 as text: one row per variant, per K "mean ± std" test micro-F1 in percent
    (sample std over the expected seeds that finished), macro-F1 when any SemEval macro
    score exists, the mean share of directed gold labels predicted with the right type but
    the wrong direction when any trial has directed labels, and "finished/expected" seeds.
    `kshot_sets` (StudyConfig.kshot_sets) names the K-shot sets in a column of its own."""
    expected = list(dict.fromkeys(expected_seeds))
    done = _finished(rows).filter(pl.col("seed").is_in(expected))
    with_macro = done["test_macro_f1_semeval"].is_not_null().any()
    with_direction = done["test_wrong_direction_rate"].is_not_null().any()
    table: dict[str, list[str]] = {"variant": list(variants)}
    if kshot_sets is not None:
        table["K-shot sets"] = [kshot_sets] * len(variants)
    for k in dict.fromkeys(ks):
        micro, macro, direction, seeds = [], [], [], []
        for variant in variants:
            cell = done.filter((pl.col("variant") == variant) & (pl.col("k") == k))
            micro.append(_mean_std_cell(cell["test_micro_f1"].to_list()))
            macro_values = cell["test_macro_f1_semeval"].drop_nulls().to_list()
            macro.append(_mean_std_cell(macro_values) if macro_values or cell.is_empty() else "n/a")
            wrong = cell["test_wrong_direction_rate"].drop_nulls()
            direction.append(f"{100 * wrong.mean():.1f}" if len(wrong) else MISSING if cell.is_empty() else "n/a")
            seeds.append(f"{cell.height}/{len(expected)}")
        label = "full" if k == 0 else f"K={k}"
        table[f"{label} micro-F1"] = micro
        if with_macro:
            table[f"{label} macro-F1"] = macro
        if with_direction:
            table[f"{label} wrong dir. %"] = direction  # mean over seeds: right type, wrong direction
        table[f"{label} seeds"] = seeds
    return pl.DataFrame(table, schema={name: pl.String for name in table})


def fewshot_numbers(rows: Sequence[Row], variants: Sequence[str] | None = None) -> pl.DataFrame:
    """Table 3 as numbers (fractions) for CSV: per (variant, k) over the finished seeds."""
    numbers = _finished(rows).group_by(CELL).agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("test_micro_f1").mean().alias("test_micro_f1_mean"),
        pl.col("test_micro_f1").std(ddof=1).alias("test_micro_f1_std"),
        pl.col("test_macro_f1_semeval").mean().alias("test_macro_f1_mean"),
        pl.col("test_macro_f1_semeval").std(ddof=1).alias("test_macro_f1_std"),
        # Directed labels only: of the directed gold labels, the share predicted as the right
        # type in the wrong direction; and accuracy with a label's two directions as one.
        pl.col("test_wrong_direction_rate").mean().alias("test_wrong_direction_rate_mean"),
        pl.col("test_undirected_accuracy").mean().alias("test_undirected_accuracy_mean"),
        pl.col("best_epoch").cast(pl.Float64).mean().alias("best_epoch_mean"),
    )
    return sorted_cells(numbers, variants)


# ---------------------------------------------------------------- Table 4 / Figure 3: epochs

def _epoch_rows(rows: Sequence[Row]) -> pl.DataFrame:
    """One row per (finished trial, epoch) with a validation score."""
    records = [
        {"variant": row["variant"], "k": row["k"], "seed": row["seed"],
         **{name: entry.get(name) for name in ("epoch", "val_micro_f1", "train_loss", "cl_loss", "val_accuracy")}}
        for row in finished_rows(rows)
        for entry in row.get("history") or []
        if entry.get("epoch") is not None and entry.get("val_micro_f1") is not None
    ]
    return pl.DataFrame(records, schema=EPOCH_SCHEMA, orient="row") if records else pl.DataFrame(schema=EPOCH_SCHEMA)


def epoch_table(rows: Sequence[Row], variants: Sequence[str] | None = None) -> pl.DataFrame:
    """Per (variant, k, epoch): mean (and std) validation micro-F1 over the finished seeds,
    with how many seeds reached that epoch, and the mean losses."""
    table = _epoch_rows(rows).group_by([*CELL, "epoch"]).agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("val_micro_f1").mean().alias("val_micro_f1_mean"),
        pl.col("val_micro_f1").std(ddof=1).alias("val_micro_f1_std"),
        pl.col("train_loss").mean().alias("train_loss_mean"),
        pl.col("cl_loss").mean().alias("cl_loss_mean"),
        pl.col("val_accuracy").mean().alias("val_accuracy_mean"),  # Figure 3's measure
    )
    return sorted_cells(table, variants, "epoch")


def _seed_best_epoch(row: Row) -> int | None:
    """The trial's own best epoch; from its history (first maximum) when it did not say."""
    if row.get("best_epoch") is not None:
        return int(row["best_epoch"])
    scored = [(e["val_micro_f1"], -e["epoch"]) for e in row.get("history") or []
              if e.get("epoch") is not None and e.get("val_micro_f1") is not None]
    return -max(scored)[1] if scored else None


def best_epochs(rows: Sequence[Row], variants: Sequence[str] | None = None) -> pl.DataFrame:
    """Per (variant, k): the epoch whose mean validation micro-F1 is best (earliest on a tie),
    that mean, and each seed's own best epoch (``seed_best_epochs``: "seed:epoch ...") with
    their mean, sample std, min and max: how soon each variant peaks, and how much seeds differ."""
    curves = epoch_table(rows)
    best = (
        curves.sort(["val_micro_f1_mean", "epoch"], descending=[True, False])
        .group_by(CELL, maintain_order=True).first()
        .select(*CELL, pl.col("epoch").alias("best_epoch"),
                pl.col("val_micro_f1_mean").alias("best_val_micro_f1"))
    )
    done = finished_rows(rows)
    seed_best = pl.DataFrame(
        {"variant": [row["variant"] for row in done], "k": [row["k"] for row in done],
         "seed": [row["seed"] for row in done], "seed_best_epoch": [_seed_best_epoch(row) for row in done]},
        schema={"variant": pl.String, "k": pl.Int64, "seed": pl.Int64, "seed_best_epoch": pl.Int64},
    ).sort("seed").group_by(CELL, maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("n"),
        pl.col("seed_best_epoch").cast(pl.Float64).mean().alias("mean_seed_best_epoch"),
        pl.col("seed_best_epoch").cast(pl.Float64).std(ddof=1).alias("std_seed_best_epoch"),
        pl.col("seed_best_epoch").min().alias("min_seed_best_epoch"),
        pl.col("seed_best_epoch").max().alias("max_seed_best_epoch"),
        pl.format("{}:{}", "seed", pl.col("seed_best_epoch").cast(pl.String).fill_null("?"))
        .str.join(" ").alias("seed_best_epochs"),
    )
    joined = best.join(seed_best, on=CELL, how="left").select(
        *CELL, "n", "best_epoch", "best_val_micro_f1", "mean_seed_best_epoch", "std_seed_best_epoch",
        "min_seed_best_epoch", "max_seed_best_epoch", "seed_best_epochs")
    return sorted_cells(joined, variants)


def best_epochs_display(rows: Sequence[Row], variants: Sequence[str] | None = None) -> pl.DataFrame:
    """``best_epochs`` for reading: "full" K label, F1 in percent, one decimal."""
    def one_decimal(value: float | None, scale: float = 1.0) -> str:
        return "" if value is None else f"{scale * value:.1f}"

    best = best_epochs(rows, variants)
    return pl.DataFrame(
        {"variant": best["variant"].to_list(),
         "K": [k_label(k) for k in best["k"]],
         "seeds": best["n"].to_list(),
         "best epoch (mean curve)": best["best_epoch"].to_list(),
         "best val micro-F1": [one_decimal(v, 100.0) for v in best["best_val_micro_f1"]],
         "mean per-seed best epoch": [one_decimal(v) for v in best["mean_seed_best_epoch"]],
         "std": [one_decimal(v) for v in best["std_seed_best_epoch"]],
         "range": ["" if low is None else f"{low}-{high}"
                   for low, high in zip(best["min_seed_best_epoch"], best["max_seed_best_epoch"])],
         "per seed (seed:epoch)": best["seed_best_epochs"].to_list()},
        schema={"variant": pl.String, "K": pl.String, "seeds": pl.Int64, "best epoch (mean curve)": pl.Int64,
                "best val micro-F1": pl.String, "mean per-seed best epoch": pl.String, "std": pl.String,
                "range": pl.String, "per seed (seed:epoch)": pl.String},
    )


# ---------------------------------------------------------------- output

def _markdown_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".4g")
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(df: pl.DataFrame) -> str:
    """A GitHub markdown table: header row, separator, one line per row."""
    lines = ["| " + " | ".join(_markdown_cell(name) for name in df.columns) + " |",
             "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += ["| " + " | ".join(_markdown_cell(value) for value in row) + " |" for row in df.iter_rows()]
    return "\n".join(lines) + "\n"
