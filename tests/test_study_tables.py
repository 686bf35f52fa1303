"""Result tables and figures from hand-made stage-2 trial rows."""
from __future__ import annotations

import polars as pl
import pytest

from study.reporting.plots import plot_f1_vs_k, plot_learning_curves
from study.reporting.tables import (
    best_epochs,
    best_epochs_display,
    epoch_table,
    fewshot_numbers,
    fewshot_table,
    to_markdown,
    trial_frame,
)
from study.reporting.files import write_tables

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def trial(variant, k, seed, test, *, val=None, macro=None, curve=(), best_epoch=None, status="FINISHED"):
    history = [{"epoch": e, "val_micro_f1": v, "train_loss": 1.0 / e, "cl_loss": None}
               for e, v in enumerate(curve, start=1)]
    if status != "FINISHED":
        test = val = macro = best_epoch = None
    return {"variant": variant, "k": k, "seed": seed, "status": status, "val_micro_f1": val,
            "test_micro_f1": test, "test_macro_f1_semeval": macro, "best_epoch": best_epoch,
            "history": history}


@pytest.fixture
def rows():
    return [
        # cloce_d, K=8: three seeds, 40/42/44 -> 42.0 ± 2.0; peaks at epoch 2.
        trial("cloce_d", 8, 1, 0.40, curve=[0.10, 0.30, 0.20], best_epoch=2),
        trial("cloce_d", 8, 2, 0.42, curve=[0.20, 0.40, 0.30], best_epoch=2),
        trial("cloce_d", 8, 3, 0.44, curve=[0.30, 0.50, 0.10], best_epoch=2),
        # cloce_d, K=16: two seeds finished, seed 3 failed.
        trial("cloce_d", 16, 1, 0.50, curve=[0.1, 0.2, 0.6], best_epoch=3),
        trial("cloce_d", 16, 2, 0.60, curve=[0.1, 0.2, 0.7], best_epoch=3),
        trial("cloce_d", 16, 3, None, status="FAILED"),
        # finetune, K=8: a single seed; finetune K=16 never ran.
        trial("finetune", 8, 1, 0.41, curve=[0.05, 0.1, 0.4], best_epoch=3),
        # full data, one seed.
        trial("cloce_d", 0, 1, 0.70, curve=[0.6, 0.7], best_epoch=2),
    ]


def test_trial_frame_has_one_row_per_trial_with_scalar_fields(rows):
    frame = trial_frame(rows)
    assert frame.height == len(rows)
    assert {"variant", "k", "seed", "status", "test_micro_f1", "best_epoch", "epochs_run"} <= set(frame.columns)
    assert "history" not in frame.columns
    assert frame["epochs_run"].to_list()[:2] == [3, 3]


def test_fewshot_cell_is_mean_and_sample_std_in_percent(rows):
    table = fewshot_table(rows, ["cloce_d"], [8], [1, 2, 3])
    assert table["K=8 micro-F1"].to_list() == ["42.0 ± 2.0"]
    assert table["K=8 seeds"].to_list() == ["3/3"]


def test_fewshot_single_seed_is_marked_without_std(rows):
    table = fewshot_table(rows, ["finetune"], [8], [1, 2, 3])
    assert table["K=8 micro-F1"].to_list() == ["41.0 (1 seed)"]


def test_failed_trial_and_never_run_cell_show_as_missing_and_short_seed_counts(rows):
    table = fewshot_table(rows, ["cloce_d", "finetune"], [16], [1, 2, 3])
    assert table["K=16 micro-F1"].to_list() == ["55.0 ± 7.1", "missing"]
    assert table["K=16 seeds"].to_list() == ["2/3", "0/3"]


def test_fewshot_columns_follow_given_k_and_variant_order_with_full_label(rows):
    table = fewshot_table(rows, ["finetune", "cloce_d"], [16, 8, 0], [1, 2, 3])
    assert table.columns == ["variant", "K=16 micro-F1", "K=16 seeds", "K=8 micro-F1", "K=8 seeds",
                             "full micro-F1", "full seeds"]
    assert table["variant"].to_list() == ["finetune", "cloce_d"]


def test_macro_columns_appear_only_when_semeval_macro_exists(rows):
    assert not any("macro" in c for c in fewshot_table(rows, ["cloce_d"], [8], [1, 2, 3]).columns)
    semeval = [trial("cloce_d", 8, s, 0.5, macro=m) for s, m in [(1, 0.30), (2, 0.34)]]
    table = fewshot_table(semeval, ["cloce_d"], [8], [1, 2])
    assert table.columns == ["variant", "K=8 micro-F1", "K=8 macro-F1", "K=8 seeds"]
    assert table["K=8 macro-F1"].to_list() == ["32.0 ± 2.8"]


def test_wrong_direction_column_appears_only_with_directed_labels(rows):
    assert not any("wrong dir." in c for c in fewshot_table(rows, ["cloce_d"], [8], [1, 2, 3]).columns)
    semeval = [trial("cloce_d", 8, s, 0.5) | {"test_wrong_direction_rate": w, "test_undirected_accuracy": a}
               for s, w, a in [(1, 0.10, 0.6), (2, 0.20, 0.7)]]
    table = fewshot_table(semeval, ["cloce_d", "prompt"], [8], [1, 2])
    assert table.columns == ["variant", "K=8 micro-F1", "K=8 wrong dir. %", "K=8 seeds"]
    assert table["K=8 wrong dir. %"].to_list() == ["15.0", "missing"]  # mean over seeds
    cell = fewshot_numbers(semeval).row(0, named=True)
    assert cell["test_wrong_direction_rate_mean"] == pytest.approx(0.15)
    assert cell["test_undirected_accuracy_mean"] == pytest.approx(0.65)


def test_fewshot_numbers_keep_fractions_and_skip_failed_trials(rows):
    numbers = fewshot_numbers(rows)
    cell = numbers.filter((pl.col("variant") == "cloce_d") & (pl.col("k") == 16)).row(0, named=True)
    assert cell["n"] == 2
    assert cell["test_micro_f1_mean"] == pytest.approx(0.55)
    assert cell["best_epoch_mean"] == pytest.approx(3.0)
    assert numbers["variant"].to_list() == ["cloce_d"] * 3 + ["finetune"]  # by name when not given
    assert numbers.filter(pl.col("variant") == "cloce_d")["k"].to_list() == [8, 16, 0]  # full last


def test_epoch_table_means_validation_f1_over_seeds(rows):
    table = epoch_table(rows).filter((pl.col("variant") == "cloce_d") & (pl.col("k") == 8))
    assert table["epoch"].to_list() == [1, 2, 3]
    assert table["val_micro_f1_mean"].to_list() == pytest.approx([0.20, 0.40, 0.20])
    assert table["n"].to_list() == [3, 3, 3]


def test_epoch_table_means_validation_accuracy_beside_f1():
    """Figure 3 of the paper plots validation accuracy per epoch; older histories have none."""
    rows = [trial("prompt_ki", 8, seed, 0.3, curve=[0.1, 0.2]) for seed in (1, 2, 3)]
    for row, accuracies in zip(rows, ([0.5, 0.6], [0.7, 0.8], [None, None])):
        for entry, accuracy in zip(row["history"], accuracies):
            entry["val_accuracy"] = accuracy
    del rows[2]["history"][0]["val_accuracy"]
    table = epoch_table(rows)
    assert table["val_accuracy_mean"].to_list() == pytest.approx([0.6, 0.7])
    assert table["val_micro_f1_mean"].to_list() == pytest.approx([0.1, 0.2])


def test_best_epoch_picks_epoch_with_best_mean_curve(rows):
    best = best_epochs(rows)
    by_cell = {(r["variant"], r["k"]): r for r in best.iter_rows(named=True)}
    assert by_cell[("cloce_d", 8)]["best_epoch"] == 2
    assert by_cell[("cloce_d", 8)]["best_val_micro_f1"] == pytest.approx(0.40)
    assert by_cell[("cloce_d", 16)]["best_epoch"] == 3
    assert by_cell[("cloce_d", 16)]["mean_seed_best_epoch"] == pytest.approx(3.0)


def test_best_epochs_list_each_seeds_best_epoch_with_mean_and_spread():
    rows = [trial("prompt_ki", 8, seed, 0.3, curve=[0.1, 0.2, 0.3], best_epoch=epoch)
            for seed, epoch in [(3, 4), (1, 2), (2, 3)]]
    best = best_epochs(rows).row(0, named=True)
    assert best["seed_best_epochs"] == "1:2 2:3 3:4"  # seed order
    assert best["mean_seed_best_epoch"] == pytest.approx(3.0)
    assert best["std_seed_best_epoch"] == pytest.approx(1.0)
    assert (best["min_seed_best_epoch"], best["max_seed_best_epoch"]) == (2, 4)
    shown = best_epochs_display(rows).row(0, named=True)
    assert (shown["std"], shown["range"], shown["per seed (seed:epoch)"]) == ("1.0", "2-4", "1:2 2:3 3:4")


def test_per_seed_best_epoch_falls_back_to_history():
    rows = [trial("prompt", 8, 1, 0.3, curve=[0.1, 0.5, 0.2]), trial("prompt", 8, 2, 0.3, curve=[0.4, 0.1, 0.3])]
    best = best_epochs(rows).row(0, named=True)
    assert best["mean_seed_best_epoch"] == pytest.approx(1.5)  # seeds peak at epochs 2 and 1


def test_markdown_has_header_separator_and_one_row_per_variant(rows):
    text = to_markdown(fewshot_table(rows, ["cloce_d", "finetune"], [8, 16], [1, 2, 3]))
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 2
    assert lines[0].startswith("| variant | K=8 micro-F1 |")
    assert set(lines[1].replace("|", "").split()) == {"---"}
    assert lines[2].startswith("| cloce_d | 42.0 ± 2.0 | 3/3 |")


def test_write_tables_writes_every_file(rows, tmp_path):
    paths = write_tables(rows, ["cloce_d", "finetune"], [8, 16, 0], [1, 2, 3], tmp_path / "tables")
    assert set(paths) == {"fewshot_table.md", "fewshot_table.csv", "fewshot_numbers.csv",
                          "epoch_table.csv", "best_epochs.md", "best_epochs.csv", "trials.csv",
                          "comparisons.md", "comparisons.csv", "comparison_seeds.csv"}
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0


def test_tables_tolerate_only_failed_trials():
    rows = [trial("cloce_s", 8, 1, None, status="FAILED")]
    assert fewshot_table(rows, ["cloce_s"], [8], [1])["K=8 micro-F1"].to_list() == ["missing"]
    assert epoch_table(rows).is_empty() and best_epochs(rows).is_empty() and fewshot_numbers(rows).is_empty()


@pytest.mark.parametrize("plot", [plot_learning_curves, plot_f1_vs_k])
def test_plots_write_png_despite_missing_and_failed_cells(plot, rows, tmp_path):
    path = plot(rows, tmp_path / "figure.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 1000


@pytest.mark.parametrize("plot", [plot_learning_curves, plot_f1_vs_k])
def test_plots_write_png_with_no_finished_trials(plot, tmp_path):
    path = plot([trial("cloce_s", 8, 1, None, status="FAILED")], tmp_path / "empty.png")
    assert path.read_bytes()[:8] == PNG_MAGIC
