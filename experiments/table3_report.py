"""docs/results.md's Table 3 section, from the results files of experiments/table3_results.py:
the rows in the paper's layout, the best epochs, and each CLoCE variant paired against each
baseline (t test over seeds, bootstrap over test sentences). Rewritten whole on every run."""
from __future__ import annotations

from experiments.protocol_results import records
from experiments.table3_results import PAIRS, PAPER_ROWS, PARTS, READING, REPORT, ROWS, SECTION, WALL_TIME


def section() -> str:
    from experiments.results_report import provenance, wall_time
    from study.reporting.comparisons import comparison_table
    from study.reporting.tables import best_epochs_display, fewshot_table, to_markdown

    lines = [f"{SECTION} (issue 22)", "",
             "Produced by `python -m experiments.table3_results` (protocol in `experiments/semeval_table3.toml` and "
             "`experiments/scierc_table3.toml`); `--report` rewrites this section from `experiments/results/*.jsonl`. "
             "K-shot sets: KnowPrompt's (`train.kshot_sampler = \"knowprompt\"`). Rows: "
             + ", ".join(f"{PAPER_ROWS[v]} = `{v}`" for v in ROWS) + ". Test micro-F1 without the no-relation "
             "label, at the best val epoch; mean ± sample std over the seeds that finished. "
             + wall_time(WALL_TIME, []), ""]
    for title, names, ks in (("SemEval-2010 Task 8", ("semeval_table3_k8", "semeval_table3_k16"), [8, 16]),
                             ("SciERC (6 real entity types)", ("scierc_table3_k16",), [16])):
        rows = [r for name in names for r in records(PARTS[name])]
        if not rows:
            lines += [f"### {title}", "", "Not run yet.", ""]
            continue
        seeds = PARTS[names[0]].seeds
        lines += [f"### {title}", "", to_markdown(fewshot_table(rows, list(ROWS), ks, seeds, "knowprompt")), "",
                  f"Rows by the commit that ran them: {provenance(rows)}.", "",
                  to_markdown(best_epochs_display(rows, list(ROWS))), "",
                  "Each CLoCE variant against each baseline, paired over seeds (same K-shot set per seed) and over "
                  "test sentences (paired bootstrap, 1,000 resamples per seed):", "",
                  to_markdown(comparison_table(rows, list(ROWS), seeds, PAIRS)), ""]
    if READING.exists():
        lines += [READING.read_text().rstrip(), ""]
    return "\n".join(lines)


def write_report() -> None:
    """docs/results.md: this section replaced, or put before the protocol section, which
    experiments/protocol_results.py keeps last (it rewrites the page from there to the end)."""
    from experiments.protocol_results import SECTION as PROTOCOL

    page = REPORT.read_text() if REPORT.exists() else ""
    if SECTION in page:
        before, _, after = page.partition(SECTION)
        rest = after.partition("\n## ")[2]
        rest = f"## {rest}" if rest else ""
    else:
        before, marker, rest = page.partition(PROTOCOL)
        rest = marker + rest
    REPORT.write_text(before.rstrip() + "\n\n" + section().rstrip() + "\n" + (f"\n{rest}" if rest else ""))
    print(f"wrote {REPORT}", flush=True)
