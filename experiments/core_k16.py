"""The cloce-core table: SemEval test micro-F1 (excl. Other) of all five variants at K=16,
seeds 1-3, on the default backbone; each variant's learning rate chosen on val only.

    python -m experiments.core_k16            # runs what is missing, then writes the table
    python -m experiments.core_k16 --table    # the table from what has finished

Every finished run is appended to experiments/results/core_k16.jsonl at once, so an
interrupted run continues where it stopped.

Hyper-parameters, chosen on val only: the learning rate of `finetune` and of `prompt_ki`
is the one of LEARNING_RATES whose seed-1 run has the best val micro-F1 (best epoch);
`prompt`, `cloce_s` and `cloce_d` share prompt_ki's head and take its rate (the
contrastive lr and margin stay at METHOD.md's defaults: 1e-5, 0.5). Seeds 2 and 3 then run
at the chosen rate. One thread per run, so a second process can share this 2-core machine. Validation is a K-shot sample of val (K=16 per relation, the realistic
few-shot protocol, and 5x cheaper than all 1,493 val sentences every epoch); test is the
full test set. Test F1 never chooses anything.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cloce.config import TrainConfig  # noqa: E402
from cloce.data.dataset import load_dataset  # noqa: E402
from cloce.run import run_summary  # noqa: E402
from cloce.train import train  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "core_k16.jsonl"
TABLE = Path(__file__).parent / "results" / "core_k16.md"
VARIANTS = ("finetune", "prompt", "prompt_ki", "cloce_s", "cloce_d")
SEEDS = (1, 2, 3)
LEARNING_RATES = (1e-4, 3e-4)
FIXED = dict(k=16, epochs=10, batch_size=16, cl_lr=1e-5, margin=0.5, kshot_val=True, num_threads=1,
             sentence_markers=False, kshot_sampler="per_label")  # the paper's unmarked template and the sets core_k16.jsonl was recorded with
SEARCHED = ("finetune", "prompt_ki")  # the others take prompt_ki's learning rate
LR_FROM = {"prompt": "prompt_ki", "cloce_s": "prompt_ki", "cloce_d": "prompt_ki"}
PEER = {8: 30.9, 16: 53.4, 32: 69.3}  # HF Trainer, [CLS] over @/# markers, 30 epochs, lr on val, seed 1


def finished() -> dict[tuple, dict]:
    if not RESULTS.exists():
        return {}
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    return {(r["variant"], r["lr"], r["seed"]): r for r in rows}


def chosen_lr(variant: str, done: dict) -> float | None:
    """The seed-1 learning rate with the best val micro-F1, once all candidates have run."""
    variant = LR_FROM.get(variant, variant)
    trials = [done[(variant, lr, 1)] for lr in LEARNING_RATES if (variant, lr, 1) in done]
    if len(trials) < len(LEARNING_RATES):
        return None
    return max(trials, key=lambda r: r["val_micro_f1"])["lr"]


def run_one(dataset, variant: str, lr: float, seed: int) -> None:
    config = TrainConfig(variant=variant, seed=seed, lr=lr, **FIXED)
    started = time.perf_counter()
    result = train(config, dataset)
    row = run_summary(result) | {
        "lr": lr, "seconds": round(time.perf_counter() - started, 1),
        "ce_seconds_per_epoch": statistics.mean(r.ce_seconds for r in result.history),
        "cl_seconds_per_epoch": statistics.mean(r.cl_seconds for r in result.history),
        "val_seconds_per_epoch": statistics.mean(r.val_seconds for r in result.history),
        "ce_samples_per_s": statistics.mean(r.train_samples_per_s for r in result.history),
        "val_curve": [round(r.val_micro_f1, 4) for r in result.history],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as sink:
        sink.write(json.dumps(row) + "\n")
    keys = ("variant", "lr", "seed", "best_epoch", "val_micro_f1", "test_micro_f1", "seconds")
    print(json.dumps({k: row[k] for k in keys}), flush=True)


def run_missing(reverse: bool = False) -> None:
    """`reverse` walks stage 2 from its end: a second process on the other core shares the work."""
    dataset = load_dataset()
    for variant in SEARCHED:  # stage 1: the learning rate on seed 1
        for lr in LEARNING_RATES:
            if (variant, lr, 1) not in finished():
                run_one(dataset, variant, lr, 1)
    plan = [(variant, seed) for variant in VARIANTS for seed in SEEDS]  # stage 2 at the chosen rate
    for variant, seed in reversed(plan) if reverse else plan:
        lr = chosen_lr(variant, finished())
        if (variant, lr, seed) not in finished():
            run_one(dataset, variant, lr, seed)


def table() -> str:
    done = finished()
    lines = [
        "| variant | lr (chosen on val) | val micro-F1 | test micro-F1 (excl. Other) | test SemEval macro-F1 | best epoch | CE s/epoch | CE samples/s | CL s/epoch |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        lr = chosen_lr(variant, done)
        rows = [done[(variant, lr, s)] for s in SEEDS if (variant, lr, s) in done]
        if len(rows) < len(SEEDS):
            lines.append(f"| {variant} | (not finished) | | | | | | | |")
            continue

        def cell(key: str) -> str:
            values = [100 * r[key] for r in rows]
            return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"

        lines.append(
            f"| {variant} | {lr:g} | {cell('val_micro_f1')} | {cell('test_micro_f1')} | {cell('test_macro_f1_semeval')} "
            f"| {', '.join(str(r['best_epoch']) for r in rows)} "
            f"| {statistics.mean(r['ce_seconds_per_epoch'] for r in rows):.1f} "
            f"| {statistics.mean(r['ce_samples_per_s'] for r in rows):.1f} "
            f"| {statistics.mean(r['cl_seconds_per_epoch'] for r in rows):.1f} |"
        )
    lines.append(f"| peer: HF Trainer fine-tuning (seed 1 only) | on val | | {PEER[16]} | | | | | |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="store_true", help="only print the table of finished runs")
    parser.add_argument("--reverse", action="store_true", help="take the missing runs from the end (a 2nd process)")
    args = parser.parse_args()
    if not args.table:
        run_missing(args.reverse)
    text = table()
    TABLE.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
