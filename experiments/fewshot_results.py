"""The few-shot results table (issue 5), produced by the study system, plus its peer:

    python -m experiments.fewshot_results             # hours on 2 cores; re-run to continue
    python -m experiments.fewshot_results --report    # only rewrite docs/results.md

Parts, in this order, each continuing from its results file under experiments/results/
(JSONL, one finished trial per line; commit them as they grow and a later run, on any
machine, picks up where this one stopped):
  for K in 8, 16, 32: the `semeval_results` study at that K (all five variants, Optuna on
                      val, seeds 1-5)                    -> semeval_fewshot.jsonl
                      the Hugging Face Trainer peer at K  -> hf_peer.jsonl
  full data: `semeval_full` (finetune, prompt_ki, cloce_d) -> semeval_full.jsonl
Every study logs to MLflow like any other (./mlflow.db unless --tracking-uri).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
FEWSHOT, FULL, PEER = RESULTS / "semeval_fewshot.jsonl", RESULTS / "semeval_full.jsonl", RESULTS / "hf_peer.jsonl"
WALL_TIME = RESULTS / "wall_time.jsonl"  # one line per part run, finished or interrupted
REPORT = REPO / "docs" / "results.md"
PEER_LRS = (5e-5, 1e-4, 2e-4, 5e-4)
PROTOCOL_SECTION = "## The few-shot protocol at K=16"  # docs/results.md's last section, written by experiments/protocol_results.py


def run_study(experiment: str, results_file: Path, extra: list[str], tracking_uri: str | None) -> int:
    command = [sys.executable, str(REPO / "study" / "run_fewshot_grid.py"), "--experiment", experiment,
               "--results-file", str(results_file), *extra]
    if tracking_uri:
        command += ["--tracking-uri", tracking_uri]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO).returncode


@contextlib.contextmanager
def timed_part(part: str, wall_file: Path = WALL_TIME):
    """Appends the part's wall time to `wall_file` when it ends, also when it is interrupted
    (Ctrl-C, or SIGTERM, turned into an exit below), so the page can say what the run cost."""
    from study.driver.ledger import code_version

    started, finished = time.time(), False
    try:
        yield
        finished = True
    finally:
        line = {"part": part, "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
                "seconds": round(time.time() - started, 1), "finished": finished, "code": code_version(),
                "machine": f"{os.cpu_count()} cores"}
        with wall_file.open("a") as out:
            out.write(json.dumps(line) + "\n")


def run_all(ks: list[int], tracking_uri: str | None, with_full: bool) -> None:
    from experiments.hf_peer import budget_from, run_peer
    from cloce.data.dataset import load_dataset
    from study.configuration.study_file import load_study_config

    study = load_study_config("semeval_results")
    config = study.train_config("finetune", ks[0], study.search.search_seed)
    budget = budget_from(config, PEER_LRS, study.search.search_seed, tuple(study.seeds))
    dataset = load_dataset(None)
    for k in ks:
        with timed_part(f"K={k} study"):
            code = run_study("semeval_results", FEWSHOT, ["--ks", str(k)], tracking_uri)
        if code != 0:
            print(f"the K={k} study exited with {code}; its finished trials are kept", flush=True)
        with timed_part(f"K={k} peer"):
            run_peer(dataset, [k], budget, PEER)
        write_report()
    if with_full:
        with timed_part("full-data study"):
            run_study("semeval_full", FULL, [], tracking_uri)
        write_report()


def write_report() -> None:
    from experiments.results_report import render

    # The protocol section belongs to experiments/protocol_results.py: kept as it is.
    kept = REPORT.read_text().partition(PROTOCOL_SECTION)[1:] if REPORT.exists() else ("", "")
    REPORT.write_text(render(FEWSHOT, PEER, FULL, wall_file=WALL_TIME) + ("\n" + "".join(kept) if kept[0] else ""))
    print(f"wrote {REPORT}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true", help="only rewrite docs/results.md from the results files")
    parser.add_argument("--ks", nargs="+", type=int, default=[8, 16, 32])
    parser.add_argument("--no-full", action="store_true", help="skip the full-data runs")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default ./mlflow.db)")
    args = parser.parse_args(argv)
    if not args.report:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `kill`: still log the interrupted part's time
        started = time.perf_counter()
        run_all(args.ks, args.tracking_uri, not args.no_full)
        print(f"results run finished in {(time.perf_counter() - started) / 60:.0f} min", flush=True)
    write_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
