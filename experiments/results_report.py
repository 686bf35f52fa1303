"""docs/results.md from the results files of experiments/fewshot_results.py: whatever has
finished so far, with the missing cells marked."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from study.reporting.tables import best_epochs_display, fewshot_table, to_markdown

VARIANTS = ["finetune", "prompt", "prompt_ki", "cloce_s", "cloce_d"]
PEER = "hf_trainer_peer"
SEEDS = [1, 2, 3, 4, 5]
KS = [8, 16, 32]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def study_finals(records: list[dict], search_seed: int = 1) -> list[dict]:
    """Final-stage rows of a study's results file: the final trials, plus per cell the best
    search trial (on val), which is the search seed's final run (the study reuses it); a tie
    goes as the study broke it (`best_record`)."""
    from study.driver.cell_search import best_record

    finals = [r for r in records if r["stage"] == "final"]
    for cell in {(r["variant"], r["k"]) for r in records if r["stage"] == "search"}:
        searched = [r for r in records if r["stage"] == "search" and (r["variant"], r["k"]) == cell
                    and r["status"] == "FINISHED"]
        if searched and not any(r["seed"] == search_seed and (r["variant"], r["k"]) == cell for r in finals):
            finals.append(best_record(searched) | {"stage": "final"})
    return finals


def peer_finals(records: list[dict], search_seed: int = 1) -> list[dict]:
    """The peer's runs as table rows: per K the best lr on the search seed, then every seed."""
    rows = []
    for k in sorted({r["k"] for r in records}):
        searched = [r for r in records if r["k"] == k and r["stage"] == "search"]
        if not searched:
            continue
        best = max(searched, key=lambda r: r["val_micro_f1"])
        chosen = [best] + [r for r in records if r["k"] == k and r["stage"] == "final" and r["lr"] == best["lr"]]
        for r in chosen:
            history = [{"epoch": i + 1, "val_micro_f1": v} for i, v in enumerate(r.get("val_per_epoch", []))]
            rows.append({"variant": PEER, "k": k, "seed": r["seed"], "status": "FINISHED",
                         "val_micro_f1": r["val_micro_f1"], "test_micro_f1": r["test_micro_f1"],
                         "test_macro_f1_semeval": r["test_macro_f1_semeval"], "best_epoch": r["best_epoch"],
                         "history": history})
    return rows


def differences(rows: list[dict], pairs: list[tuple[str, str]], ks: list[int]) -> str:
    """Mean test micro-F1 differences, and whether each is within one (the larger) std."""
    lines = ["| K | comparison | difference (points) | larger std | within one std? |", "|---|---|---|---|---|"]
    for k in ks:
        for a, b in pairs:
            scores = {v: [100 * r["test_micro_f1"] for r in rows if r["variant"] == v and r["k"] == k
                          and r.get("test_micro_f1") is not None] for v in (a, b)}
            if len(scores[a]) < 2 or len(scores[b]) < 2:
                continue
            diff = statistics.mean(scores[a]) - statistics.mean(scores[b])
            spread = max(statistics.stdev(scores[a]), statistics.stdev(scores[b]))
            lines.append(f"| {k} | {a} - {b} | {diff:+.1f} | {spread:.1f} | {'yes' if abs(diff) <= spread else 'no'} |")
    return "\n".join(lines) + "\n"


def current(records: list[dict], experiment: str | None) -> list[dict]:
    """Only the records run under the experiment's present configuration (its fingerprint)."""
    if experiment is None:
        return records
    from study.configuration.study_file import load_study_config

    study = load_study_config(experiment)
    if study.train.get("sentence_markers") is None:  # left to the labels: decide as the study's driver does
        from study.trial.warm import dataset

        study = study.with_label_decisions(dataset(study.data_config()).label_map)
    return [r for r in records if r.get("fingerprint") == study.cell_fingerprint(r["variant"], r["k"])]


def superseded(records: list[dict], experiment: str) -> list[dict]:
    """Records of an earlier configuration of their cell: kept in the file, left out of the table."""
    kept = {id(r) for r in current(records, experiment)}
    return [r for r in records if id(r) not in kept]


def earlier_rows(records: list[dict]) -> list[dict]:
    """Table rows of superseded records, one row per (variant, configuration): `cloce_s · 1a2b3c`
    (the fingerprint's first characters), so that two earlier configurations never mix."""
    rows = []
    for fingerprint in dict.fromkeys(r.get("fingerprint") for r in records):
        group = [r for r in records if r.get("fingerprint") == fingerprint]
        rows += [r | {"variant": f"{r['variant']} · {str(fingerprint)[:6]}"} for r in study_finals(group)]
    return rows


def provenance(records: list[dict]) -> str:
    """Which commits ran the rows (the `code` field; records before it existed have none)."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.get("code") or "unrecorded"] = counts.get(r.get("code") or "unrecorded", 0) + 1
    return ", ".join(f"`{code}` {n}" for code, n in sorted(counts.items()))


def wall_time(wall_file: Path | None, unrecorded: list[dict]) -> str:
    """What the run has cost so far, from the parts' wall-time lines (interrupted ones included),
    and the training time of the trials run before those lines existed."""
    lines = read_jsonl(wall_file) if wall_file else []
    trial_seconds = sum(e.get("seconds", 0.0) for r in unrecorded for e in r.get("history", []))
    before = (f" Before it existed {len(unrecorded)} trials of the tables ran (those without a `code` field): "
              f"{trial_seconds / 60:.0f} min of training and validation, two trials at a time, plus their test "
              "passes and the K=8 peer.") if unrecorded else ""
    if not lines:
        return "Wall time: not recorded yet." + before
    total = sum(line["seconds"] for line in lines)
    by_part: dict[str, float] = {}
    for line in lines:
        by_part[line["part"]] = by_part.get(line["part"], 0.0) + line["seconds"]
    parts = ", ".join(f"{part} {seconds / 60:.0f} min" for part, seconds in by_part.items())
    interrupted = sum(not line["finished"] for line in lines)
    return (f"Wall time recorded so far: {total / 3600:.1f} h over {len(lines)} runs of its parts ({parts}); "
            f"{interrupted} of them interrupted and continued later (`{wall_file.name}`)." + before)


def render(fewshot_file: Path, peer_file: Path, full_file: Path, check_fingerprints: bool = True,
           wall_file: Path | None = None) -> str:
    fewshot_records = read_jsonl(fewshot_file)
    fewshot = study_finals(current(fewshot_records, "semeval_results" if check_fingerprints else None))
    earlier = earlier_rows(superseded(fewshot_records, "semeval_results")) if check_fingerprints else []
    peer = peer_finals(read_jsonl(peer_file))
    full = study_finals(current(read_jsonl(full_file), "semeval_full" if check_fingerprints else None))
    rows = fewshot + peer
    parts = [
        "# Few-shot results on SemEval-2010 Task 8",
        "",
        "Produced by `python -m experiments.fewshot_results` (the study system, experiment "
        "`semeval_results`; see its header for the budget and what it trades) from the results files in "
        "`experiments/results/`; this page is rewritten from them (`--report`). Test micro-F1 excludes `Other`; "
        "macro-F1 is SemEval's official score (9 directed relation types, `Other` excluded); mean ± sample std "
        "over the seeds that finished; test at the best val epoch. `hf_trainer_peer`: the Hugging Face "
        "`Trainer` ([CLS] head, cloce's entity markers, the same K-shot samples and budget, lr chosen on val "
        "from " + ", ".join(f"{lr:g}" for lr in (5e-5, 1e-4, 2e-4, 5e-4)) + ").",
        "",
        "Every trial is an MLflow run (./mlflow.db; parent run per study invocation, experiment "
        "`cloce-semeval_results`; the full-data runs `cloce-semeval_full`): `mlflow ui --backend-store-uri "
        "sqlite:///mlflow.db`; each parent run holds the table and plots of its invocation. The peer is not a "
        "study: its runs are lines of `hf_peer.jsonl` only. "
        + wall_time(wall_file, [r for r in current(fewshot_records, "semeval_results" if check_fingerprints else None)
                                if not r.get("code")]),
        "",
        "## Few-shot (K per relation, seeds 1-5)",
        "",
        to_markdown(fewshot_table(rows, VARIANTS + [PEER], KS, SEEDS)),
        "## Best validation epoch per variant",
        "",
        to_markdown(best_epochs_display(rows, VARIANTS + [PEER])),
        "## Differences against the goals",
        "",
        differences(rows, [("finetune", PEER), ("prompt_ki", PEER), ("prompt_ki", "finetune"),
                           ("cloce_s", "prompt_ki"), ("cloce_d", "prompt_ki")], KS),
    ]
    parts += ["Trials per commit that ran them (the `code` field of each results-file line): "
              + provenance(current(fewshot_records, "semeval_results" if check_fingerprints else None))
              + ". `unrecorded`: before commit `fd2742d`, which also switched to the fused AdamW kernel (the "
              "same update, other float rounding); each cell was run by one or the other, never both.", ""]
    reading = fewshot_file.parent / "reading.md"  # hand-written, kept across rewrites of the page
    if reading.exists():
        parts += ["## Reading", "", reading.read_text().rstrip(), ""]
    if earlier:
        labels = list(dict.fromkeys(r["variant"] for r in sorted(earlier, key=lambda r: VARIANTS.index(r["variant"].split(" ")[0]))))
        parts += ["## Earlier configurations (superseded, not in the tables above)", "",
                  "Trials of a cell whose configuration has since changed, one row per configuration (`variant · "
                  "fingerprint`); the reading above says what each one was.",
                  "", to_markdown(fewshot_table(earlier, labels, KS, SEEDS))]
    if full:
        parts += ["## Full training set (6,507 sentences)", "",
                  to_markdown(fewshot_table(full, ["finetune", "prompt_ki", "cloce_d"], [0], sorted({r["seed"] for r in full})))]
    return "\n".join(parts)
