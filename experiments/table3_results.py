"""Issue 22's runs: the CLoCE paper's Table 3 rows (FINE-TUNING, PTR, KNOWPROMPT, KI, CLoCE-S,
CLoCE-D) on KnowPrompt's own K-shot sets, through the study system.

    python -m experiments.table3_results                  # every part still missing, in order
    python -m experiments.table3_results --only semeval_table3_k16
    python -m experiments.table3_results --variants finetune prompt_ki   # a subset of the rows
    python -m experiments.table3_results --report         # docs/results.md's section from the results files

Each part is one study with its own results file under experiments/results/ (JSONL, one
finished trial per line): re-running continues where a part stopped (a finished trial is
never run again), on any machine, and a part run with fewer rows is completed by a later run
with more. Every part logs to MLflow like any other study.

Parts (experiments/semeval_table3.toml and scierc_table3.toml say the protocol):
  semeval_table3_k16   SemEval, K=16, seeds 1-5
  semeval_table3_k8    SemEval, K=8, seeds 1-5
  scierc_table3_k16    SciERC (6 real entity types), K=16, seeds 1-5
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from experiments.protocol_results import Part, records, run_part  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WALL_TIME = REPO / "experiments" / "results" / "table3_wall_time.jsonl"  # one line per part run
REPORT = REPO / "docs" / "results.md"
SECTION = "## Table 3 on KnowPrompt's K-shot sets"
READING = REPO / "experiments" / "results" / "table3_reading.md"  # hand-written, kept across re-runs
ROWS = ("finetune", "ptr", "knowprompt", "prompt_ki", "cloce_s", "cloce_d")  # the paper's row order
PAPER_ROWS = {"finetune": "FINE-TUNING", "ptr": "PTR", "knowprompt": "KNOWPROMPT", "prompt_ki": "KI",
              "cloce_s": "CLoCE-S", "cloce_d": "CLoCE-D"}
PARTS = {part.name: part for part in (
    Part("semeval_table3_k16", "", ("--ks", "16"), experiment="semeval_table3"),
    Part("semeval_table3_k8", "", ("--ks", "8"), experiment="semeval_table3"),
    Part("scierc_table3_k16", "", ("--ks", "16"), experiment="scierc_table3"),
)}
# Each CLoCE variant against each of the paper's three baselines (and KI, its own ablation).
PAIRS = [(cloce, base) for cloce in ("cloce_s", "cloce_d") for base in ("finetune", "ptr", "knowprompt", "prompt_ki")]


def with_variants(part: Part, variants: list[str] | None) -> Part:
    if not variants:
        return part
    return Part(part.name, part.label, (*part.args, "--variants", *variants), part.seeds, part.settings, part.experiment)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(PARTS), help="these parts only")
    parser.add_argument("--variants", nargs="+", choices=ROWS, help="these rows only (default: the experiment's)")
    parser.add_argument("--report", action="store_true", help="write docs/results.md's section; run nothing")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the study's own default)")
    args = parser.parse_args(argv)
    if args.report:
        from experiments.table3_report import write_report

        write_report()
        return 0
    failures = 0
    for name in args.only or list(PARTS):
        failures += run_part(with_variants(PARTS[name], args.variants), args.tracking_uri, WALL_TIME) != 0
    return 1 if failures else 0


__all__ = ["PARTS", "records"]

if __name__ == "__main__":
    raise SystemExit(main())
