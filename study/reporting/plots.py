"""Figures from finished stage-2 trials: learning curves (the paper's Figure 3) and
test micro-F1 against K (Table 3 as a plot).

Drawn on matplotlib's Agg canvas directly (no pyplot), so importing this module never
changes the process-wide backend and works on machines without a display. Missing or
failed cells are left out of the lines; a panel with nothing to draw says so.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from study.reporting.tables import epoch_table, fewshot_numbers, k_label

Row = Mapping[str, object]


def _ordered_ks(ks: Sequence[int]) -> list[int]:
    """K ascending, the full training set (k=0) last."""
    return sorted(set(ks), key=lambda k: (k == 0, k))


def _save(figure: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(out, format="png", dpi=120)
    return out


def _colour(variant_index: int) -> str:
    """The same variant gets the same colour in every panel and in both figures."""
    return f"C{variant_index % 10}"


def _note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color="grey")


def plot_learning_curves(rows: Sequence[Row], path: str | Path,
                         variants: Sequence[str] | None = None) -> Path:
    """Mean validation micro-F1 (%) after each epoch: one panel per K, one line per variant."""
    curves = epoch_table(rows, variants)
    ks = _ordered_ks(curves["k"].to_list())
    order = list(dict.fromkeys([*(variants or []), *curves["variant"].to_list()]))
    figure = Figure(figsize=(4.2 * max(len(ks), 1), 3.6), layout="constrained")
    panels = figure.subplots(1, max(len(ks), 1), squeeze=False)[0]
    if not ks:
        _note(panels[0], "no finished trials")
    for axes, k in zip(panels, ks):
        drawn = False
        for i, variant in enumerate(order):
            curve = curves.filter((curves["variant"] == variant) & (curves["k"] == k))
            if curve.is_empty():
                continue
            axes.plot(curve["epoch"].to_list(), [100 * v for v in curve["val_micro_f1_mean"].to_list()],
                      marker="o", color=_colour(i), label=variant)
            drawn = True
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_title(f"K = {k_label(k)}")
        axes.set_xlabel("epoch")
        axes.set_ylabel("val micro-F1 (%)")
        axes.grid(alpha=0.3)
        if drawn:
            axes.legend(fontsize="small")
    return _save(figure, path)


def plot_f1_vs_k(rows: Sequence[Row], path: str | Path,
                 variants: Sequence[str] | None = None) -> Path:
    """Mean test micro-F1 (%) against K with sample-std error bars, one line per variant.

    Few-shot K values sit at even spacing; the full training set (k=0), when present, is a
    separate, unconnected point labelled "full" to the right of a dashed divider.
    """
    numbers = fewshot_numbers(rows, variants)
    order = list(dict.fromkeys([*(variants or []), *numbers["variant"].to_list()]))
    shots = [k for k in _ordered_ks(numbers["k"].to_list()) if k != 0]
    has_full = (numbers["k"] == 0).any()
    position = {k: i for i, k in enumerate(shots)}
    full_x = len(shots) + 0.5
    figure = Figure(figsize=(6.0, 4.0), layout="constrained")
    axes = figure.subplots()
    if numbers.is_empty():
        _note(axes, "no finished trials")
    for i, variant in enumerate(order):
        cells = {r["k"]: r for r in numbers.filter(numbers["variant"] == variant).iter_rows(named=True)}
        if not cells:
            continue
        colour = _colour(i)
        # NaN for a missing K breaks the line there instead of bridging the gap.
        means = [100 * cells[k]["test_micro_f1_mean"] if k in cells else math.nan for k in shots]
        stds = [_std_percent(cells[k]) if k in cells else math.nan for k in shots]
        if shots:
            axes.errorbar(range(len(shots)), means, yerr=stds, marker="o", capsize=3, color=colour, label=variant)
        if 0 in cells:
            axes.errorbar([full_x], [100 * cells[0]["test_micro_f1_mean"]], yerr=[_std_percent(cells[0])],
                          marker="s", capsize=3, color=colour, linestyle="none",
                          label=None if shots else variant)
    ticks = [position[k] for k in shots] + ([full_x] if has_full else [])
    axes.set_xticks(ticks, [str(k) for k in shots] + (["full"] if has_full else []))
    if has_full and shots:
        axes.axvline(len(shots) - 0.25, color="grey", linestyle="--", linewidth=0.8)
    axes.set_xlabel("K (instances per relation)")
    axes.set_ylabel("test micro-F1 (%)")
    axes.grid(alpha=0.3)
    if not numbers.is_empty():
        axes.legend(fontsize="small")
    return _save(figure, path)


def _std_percent(cell: Mapping[str, object]) -> float:
    """Sample std in percent; a single seed has no spread to show."""
    std = cell["test_micro_f1_std"]
    return 0.0 if std is None else 100 * float(std)
