"""Every table of a study, written into its tables folder: the result tables
(study/reporting/tables.py) and the paired comparisons (study/reporting/comparisons.py)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from study.reporting.comparisons import write_comparisons
from study.reporting.tables import (
    Row, best_epochs, best_epochs_display, epoch_table, fewshot_numbers, fewshot_table, to_markdown, trial_frame,
)


def write_tables(rows: Sequence[Row], variants: Sequence[str], ks: Sequence[int],
                 seeds: Sequence[int], out_dir: str | Path, comparisons=None,
                 kshot_sets: str | None = None) -> dict[str, Path]:
    """Write every table under ``out_dir``; returns {file name: path}. `comparisons`: the
    study's `comparison_frames`, when the caller needs them too (the bootstrap runs once).
    `kshot_sets` names the K-shot sets: a column of the few-shot table, the first line of
    every other markdown table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fewshot = fewshot_table(rows, variants, ks, seeds, kshot_sets)
    paths = {name: out / name for name in ("fewshot_table.md", "fewshot_table.csv", "fewshot_numbers.csv",
                                           "epoch_table.csv", "best_epochs.md", "best_epochs.csv", "trials.csv")}
    paths["fewshot_table.md"].write_text(to_markdown(fewshot), encoding="utf-8")
    fewshot.write_csv(paths["fewshot_table.csv"])
    fewshot_numbers(rows, variants).write_csv(paths["fewshot_numbers.csv"])
    epoch_table(rows, variants).write_csv(paths["epoch_table.csv"])
    paths["best_epochs.md"].write_text(to_markdown(best_epochs_display(rows, variants)), encoding="utf-8")
    best_epochs(rows, variants).write_csv(paths["best_epochs.csv"])
    trial_frame(rows).write_csv(paths["trials.csv"])
    paths |= write_comparisons(rows, variants, seeds, out, frames=comparisons)  # paired t over seeds, bootstrap over sentences
    if kshot_sets is not None:
        for name, path in paths.items():
            if name.endswith(".md") and name != "fewshot_table.md":
                path.write_text(f"K-shot sets: {kshot_sets}\n\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    return paths
