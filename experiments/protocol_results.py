"""Issue 16's runs: the paper's few-shot protocol at a budget that does not bind, and what
fixes the prompt variants' direction errors, all through the study system.

    python -m experiments.protocol_results                  # every part still missing, in order
    python -m experiments.protocol_results --only direction_markers mlm_head_only
    python -m experiments.protocol_results --report         # docs/results.md's section from the results files

Each part is one study with its own results file under experiments/results/ (JSONL, one
finished trial per line): re-running continues where a part stopped, on any machine, so the
files are committed as they grow. Every part logs to MLflow like any other study.

Parts (experiments/semeval_protocol.toml says the protocol: K=16, seeds 1-5, 20 epochs,
1,000 val sentences, lr 1.5756e-4 as `semeval_results` chose on val):
  semeval_protocol        prompt_ki, cloce_d, cloce_s, finetune
  semeval_protocol_k8     the same at K=8 (`semeval_results` chose the same lr on val at K=8)
  direction_markers       prompt_ki + the sentence markers (`@ head @`, `# tail #`)
  direction_role_init     prompt_ki, each directed soft label starting from the head's role word
  direction_role_template prompt_ki, role init + "[T_h] head is the [MASK] of [T_t] tail"
  mlm_head_only           prompt_ki after 300 masked-LM steps on the MLM head only (seeds 1-3)
  direction_markers_cloce_d  cloce_d + the sentence markers (its chosen cl_lr and margin), paired with its seeds
  scierc_protocol         SciERC, all variants, K 8/16 (experiments/scierc_protocol.toml)
  semeval_full_cl_lr      full data, cloce_d at the paper's contrastive lr 1e-6 (seed 1)
Each direction part and the head-only part pair with semeval_protocol's prompt_ki seeds.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
WALL_TIME = RESULTS / "protocol_wall_time.jsonl"  # one line per part run, finished or interrupted
CURVES = REPO / "docs" / "protocol_curves.png"
REPORT = REPO / "docs" / "results.md"
READING = RESULTS / "protocol_reading.md"  # hand-written reading of the main part, kept across re-runs
READING_LATER = RESULTS / "protocol_reading_later.md"  # hand-written reading of SciERC and the full-data pair
SECTION = "## The few-shot protocol at K=16"  # experiments/fewshot_results.py keeps it when it rewrites the page


@dataclass(frozen=True)
class Part:
    name: str
    label: str  # how its prompt_ki rows read in the tables (the main part keeps variant names)
    args: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    settings: tuple[str, ...] = field(default=())  # --set overrides
    experiment: str = "semeval_protocol"

    @property
    def results_file(self) -> Path:
        return RESULTS / f"{self.name}.jsonl"

    def command(self, tracking_uri: str | None) -> list[str]:
        command = [sys.executable, str(REPO / "study" / "run_fewshot_grid.py"), "--experiment", self.experiment,
                   "--results-file", str(self.results_file), "--study-dir", str(REPO / "runs" / self.name),
                   *self.args, "--seeds", *map(str, self.seeds)]
        for setting in self.settings:
            command += ["--set", setting]
        return command + (["--tracking-uri", tracking_uri] if tracking_uri else [])


MAIN = Part("semeval_protocol", "")
MAIN_K8 = Part("semeval_protocol_k8", "", ("--ks", "8"))
PROMPT_KI = ("--variants", "prompt_ki")
OPTIONS = (
    Part("direction_markers", "prompt_ki + markers", PROMPT_KI, settings=("train.sentence_markers=true",)),
    Part("direction_role_init", "prompt_ki + role init", PROMPT_KI, settings=("train.label_init=role",)),
    Part("direction_role_template", "prompt_ki + role init + role template", PROMPT_KI,
         settings=("train.label_init=role", "train.template=role_of")),
    Part("mlm_head_only", "prompt_ki + head-only MLM", PROMPT_KI, seeds=(1, 2, 3),
         settings=("train.mlm_adapt_steps=300", "train.mlm_adapt_head_only=true")),
)
# The markers on the contrastive side too, before they became SemEval's default: cloce_d at
# the contrastive lr and margin its semeval_protocol search chose (seed 1), paired with its seeds.
CLOCE_D_MARKERS = Part("direction_markers_cloce_d", "cloce_d + markers", ("--variants", "cloce_d"),
                       settings=("train.sentence_markers=true", "spaces.cloce_d.cl_lr=6.8240784270988346e-06",
                                 "spaces.cloce_d.margin=0.7482920440979423"))
SCIERC = Part("scierc_protocol", "", experiment="scierc_protocol")
# Full data, seed 1: cloce_d at the paper's contrastive lr, against the 1e-5 run of semeval_full
# (experiments/results/semeval_full.jsonl, docs/results.md) that fell 15 points below prompt_ki.
FULL_CL_LR = Part("semeval_full_cl_lr", "cloce_d, cl_lr 1e-6", ("--variants", "cloce_d"), seeds=(1,),
                  settings=("train.cl_lr=1e-6",), experiment="semeval_full")
PARTS = {part.name: part for part in (MAIN, MAIN_K8, *OPTIONS, CLOCE_D_MARKERS, SCIERC, FULL_CL_LR)}


def run_part(part: Part, tracking_uri: str | None, wall_time: Path = WALL_TIME) -> int:
    """Run one part's study; its wall time goes to `wall_time`, also when interrupted."""
    from experiments.fewshot_results import timed_part

    command = part.command(tracking_uri)
    print("$", " ".join(command), flush=True)
    with timed_part(part.name, wall_time):
        return subprocess.call(command, env=os.environ | {"OMP_NUM_THREADS": "1"}, cwd=REPO)


def records(part: Part) -> list[dict]:
    from experiments.results_report import read_jsonl, study_finals  # the search seed's final run: its best search trial

    finals = [r for r in study_finals(read_jsonl(part.results_file)) if r["status"] == "FINISHED"]
    return [r | {"variant": part.label} for r in finals] if part.label else finals


def report() -> str:
    """The docs/results.md section: tables from whatever has finished."""
    from experiments.results_report import provenance, wall_time
    from study.reporting.comparisons import comparison_table
    from study.reporting.plots import plot_learning_curves
    from study.reporting.tables import best_epochs_display, fewshot_table, to_markdown

    main = records(MAIN) + records(MAIN_K8)
    ks = sorted({r["k"] for r in main}) or [16]
    variants = ["finetune", "prompt_ki", "cloce_s", "cloce_d"]
    lines = [f"{SECTION}{' and K=8' if 8 in ks else ''}: 20 epochs, 1,000 val sentences (issue 16)", "",
             "Produced by `python -m experiments.protocol_results` (parts and protocol in its docstring and "
             "`experiments/semeval_protocol.toml`); `--report` rewrites this section from "
             "`experiments/results/*.jsonl`. Test on all 2,717 test sentences at the best val epoch; "
             "micro-F1 excludes `Other`; mean ± sample std over the seeds that finished. "
             + wall_time(WALL_TIME, []), ""]
    if main:
        lines += [to_markdown(fewshot_table(main, variants, ks, MAIN.seeds)), "",
                  f"Rows by the commit that ran them: {provenance(main)}.", "",
                  "Best validation epoch (Table 4 style; curves in `docs/protocol_curves.png`):", "",
                  to_markdown(best_epochs_display(main, variants)), "",
                  "Paired over seeds (same K-shot sample per seed) and over test sentences (paired "
                  "bootstrap, 1,000 resamples per seed):", "",
                  to_markdown(comparison_table(main, variants, MAIN.seeds,
                                               [("cloce_s", "prompt_ki"), ("cloce_d", "prompt_ki"),
                                                ("prompt_ki", "finetune")])), ""]
        CURVES.parent.mkdir(parents=True, exist_ok=True)
        plot_learning_curves(main, CURVES, variants)
        if READING.exists():
            lines += [READING.read_text().rstrip(), ""]
    def at_k16(variant: str) -> list[dict]:  # the seeds the K=16 options pair with
        return [r for r in main if r["variant"] == variant and r["k"] == 16]

    reference = at_k16("prompt_ki")
    options = [(part, records(part)) for part in OPTIONS]
    if any(rows for _, rows in options):
        rows = reference + [r for _, part_rows in options for r in part_rows]
        labels = ["prompt_ki", *(part.label for part, part_rows in options if part_rows)]
        lines += ["### Direction errors and the head-only masked-LM adaptation (prompt_ki, paired with its seeds above)", "",
                  to_markdown(fewshot_table(rows, labels, [16], MAIN.seeds)), "",
                  f"Rows by the commit that ran them: {provenance(rows)}.", "",
                  to_markdown(comparison_table(rows, labels, MAIN.seeds,
                                               [(label, "prompt_ki") for label in labels[1:]])), ""]
    cloce_markers = records(CLOCE_D_MARKERS)
    if cloce_markers:
        rows = at_k16("cloce_d") + cloce_markers
        labels = ["cloce_d", CLOCE_D_MARKERS.label]
        lines += ["### The sentence markers with cloce_d (paired with its seeds above)", "",
                  to_markdown(fewshot_table(rows, labels, [16], MAIN.seeds)), "",
                  f"Rows by the commit that ran them: {provenance(rows)}.", "",
                  to_markdown(comparison_table(rows, labels, MAIN.seeds, [(labels[1], "cloce_d")])), ""]
    scierc = records(SCIERC)
    if scierc:
        every = ["finetune", "prompt", "prompt_ki", "cloce_s", "cloce_d"]
        lines += ["### SciERC: real entity types (`experiments/scierc_protocol.toml`)", "",
                  to_markdown(fewshot_table(scierc, every, [8, 16], SCIERC.seeds)), "",
                  f"Rows by the commit that ran them: {provenance(scierc)}.", "",
                  to_markdown(best_epochs_display(scierc, every)), "",
                  to_markdown(comparison_table(scierc, every, SCIERC.seeds,
                                               [("prompt_ki", "prompt"), ("cloce_s", "prompt_ki"),
                                                ("cloce_d", "prompt_ki"), ("prompt_ki", "finetune")])), ""]
    full = records(FULL_CL_LR)
    if full:
        from experiments.fewshot_results import FULL
        from experiments.results_report import read_jsonl

        earlier = [r for r in read_jsonl(FULL) if r["stage"] == "final" and r["status"] == "FINISHED"]
        lines += ["### Full training set: cloce_d's contrastive lr (seed 1, `semeval_full`)", "",
                  "| run | cl_lr | test micro-F1 | pairs per epoch |", "| --- | --- | --- | --- |"]
        for row in [*earlier, *full]:
            pairs = [e.get("pairs", {}).get("pairs_built", 0) for e in row["history"]]
            lines.append(f"| {row['variant']} | {row['config'].get('cl_lr', '')} | {100 * row['test_micro_f1']:.1f} | "
                         f"{', '.join(map(str, pairs)) if any(pairs) else ''} |")
        lines.append("")
    if READING_LATER.exists() and (scierc or full):
        lines += [READING_LATER.read_text().rstrip(), ""]
    return "\n".join(lines)


def write_section(section: str) -> None:
    """docs/results.md's last section: replaced, or added after what is there."""
    page = REPORT.read_text() if REPORT.exists() else ""
    before = page.partition(SECTION)[0].rstrip()
    REPORT.write_text((before + "\n\n" if before else "") + section.rstrip() + "\n")
    print(f"wrote {REPORT}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(PARTS), help="these parts only")
    parser.add_argument("--report", action="store_true", help="print the report section; run nothing")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: ./mlflow.db)")
    args = parser.parse_args(argv)
    if args.report:
        write_section(report())
        return 0
    failed = 0
    for part in [PARTS[name] for name in args.only] if args.only else PARTS.values():
        failed += run_part(part, args.tracking_uri) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
