"""Run a few-shot study: (variant x K) cells, Optuna search on val, then final seeds;
every trial a Ray Train TorchTrainer inside Ray Tune, every trial an MLflow run.

    cloce-study                                            # the `quick` study, locally
    cloce-study --experiment semeval_fewshot --resume
    ray job submit --working-dir . -- python -m study --experiment semeval_fewshot

`cloce-study`, `python -m study` and (in a checkout) `python study/run_fewshot_grid.py` are the
same command.

Locally nothing needs starting: Ray runs in-process on this machine's CPUs and MLflow
writes to ./mlflow.db. --address / RAY_ADDRESS and --tracking-uri / MLFLOW_TRACKING_URI
switch to a cluster and a tracking server; --storage-path to shared storage.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from study.configuration.study_config import StudyConfigError
from study.configuration.study_file import available_experiments, load_study_config, parse_override

if TYPE_CHECKING:  # the trial side (Ray, MLflow) loads only once the arguments are read
    from study.trial.plugins import TrialPlugin
    from study.trial.trainable import TrialFunction


def build_parser() -> argparse.ArgumentParser:
    prog = "python -m study" if Path(sys.argv[0]).name == "__main__.py" else None  # else the script's name
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="quick",
                        help=f"experiment name ({', '.join(available_experiments())}) or a .toml path (default: quick)")
    parser.add_argument("--data-dir", help="data set folder (default: $CLOCE_DATA_DIR, else ../shared/datasets/semeval where it exists, else the bundled SemEval)")
    parser.add_argument("--kshot-dir", help="ready-made K-shot sets, <dir>/<K>-<seed>/train.txt as KnowPrompt and "
                        "DeepKE write them: the sets of the study's K and seed axes (default: train.kshot_sampler's draw)")
    parser.add_argument("--model", help="backbone: Hugging Face id or path (default: the experiment's, else MiniLM)")
    parser.add_argument("--variants", nargs="+", help="override the experiment's variants")
    parser.add_argument("--ks", nargs="+", type=int, help="override K values (0 = full training set)")
    parser.add_argument("--seeds", nargs="+", type=int, help="override the final-stage seeds")
    parser.add_argument("--num-samples", type=int, help="Optuna trials per (variant, K) cell")
    parser.add_argument("--epochs", type=int, help="training epochs of every trial")
    parser.add_argument("--workers-per-trial", type=int, help="Ray Train workers per trial")
    parser.add_argument("--use-gpu", action=argparse.BooleanOptionalAction, default=None, help="one GPU per worker")
    parser.add_argument("--max-concurrent-trials", type=int,
                        help="trials of one (variant, K) cell at once (0: all; every cell runs at once)")
    parser.add_argument("--max-running-trials", type=int,
                        help="trials of the whole study at once (0: as many as the cluster holds)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="any other experiment value, e.g. --set train.batch_size=8 (repeatable)")
    parser.add_argument("--study-dir", help="where ledgers, Ray results and tables go (default: runs/<experiment>)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted study in --study-dir")
    parser.add_argument("--results-file", help="a JSONL file of finished trials: written as each ends, and what "
                        "it holds is not run again (continue a long study anywhere; see study/driver/ledger.py)")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                        help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray runtime)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)")
    parser.add_argument("--storage-path", help="Ray storage for checkpoints: shared file system or s3:// (multi-node)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray runtime (default: all)")
    return parser


def overrides_from(args) -> dict:
    values = {
        # Trials run in other processes (other machines too) with another working directory.
        "study.data_dir": absolute_if_local(args.data_dir), "study.kshot_dir": absolute_if_local(args.kshot_dir),
        "study.model": absolute_if_local(args.model), "study.variants": args.variants,
        "study.ks": args.ks, "study.seeds": args.seeds, "search.num_samples": args.num_samples,
        "train.epochs": args.epochs, "resources.workers_per_trial": args.workers_per_trial,
        "resources.use_gpu": args.use_gpu, "search.max_concurrent_trials": args.max_concurrent_trials,
        "resources.max_running_trials": args.max_running_trials,
    }
    overrides = {key: value for key, value in values.items() if value is not None}
    for text in args.set:
        key, value = parse_override(text)
        overrides[key] = value
    return overrides


def absolute_if_local(path: str | None) -> str | None:
    """A folder that exists here, as an absolute path; anything else (a hub id) unchanged."""
    if path is None or not Path(path).expanduser().exists():
        return path
    return str(Path(path).expanduser().resolve())


def main(argv: list[str] | None = None, plugins: Sequence[TrialPlugin] = (),
         trial_function: TrialFunction | None = None) -> int:
    """`plugins`: TrialPlugins for every trial (study/trial/plugins.py); `trial_function`: a stand-in
    for what each trial runs (study.trial.trainable.TrialContext.trial_function). The command passes neither."""
    args = build_parser().parse_args(argv)
    try:
        study = load_study_config(args.experiment, overrides_from(args))
    except StudyConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from study.driver.study_run import StudyError, run_study

    started = time.perf_counter()
    try:
        table = run_study(study, args, plugins, trial_function)
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(table)
    print(f"study finished in {time.perf_counter() - started:.0f} s")
    return 0
