"""A whole study from a validated config: checks up front, Ray and MLflow set-up, both
stages, then the tables and plots attached to the parent run."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from study.tracking import ui_links as mlflow_ui
from study.tracking import runs as tracking
from study.configuration.study_config import StudyConfig
from study.trial.plugins import TrialPlugin
from study.trial.trainable import TrialContext, TrialFunction


# Every trial keeps its last epoch's checkpoint (weights + optimiser state, 260 MiB for MiniLM):
# a disk that cannot hold a few of them fails now, not at the first checkpoint hours in.
MIN_FREE_BYTES = 1 << 30


class StudyError(RuntimeError):
    """Something to fix before the study can run (data, paths, tracking store)."""


def preflight(study: StudyConfig, study_dir: Path):
    """Bad data or an unwritable path stops the study before Ray starts, not hours into it.
    Returns the data's label map."""
    from cloce.data.kshot_sets import k_shot_splits
    from cloce.data.sampling import KShotError
    from cloce.data.types import DataError
    from cloce.run import check_writable

    if study.requires_data_dir and not study.data_dir:
        raise StudyError(f"experiment {study.name!r} needs its data set: pass --data-dir DIR "
                         "(TACRED-style train.json/dev.json/test.json)")
    try:
        dataset = study_dataset(study)
        for k in (k for k in study.ks if k):  # a class smaller than K fails for every seed alike
            # A ready-made folder must hold every (K, seed) the study trains on.
            for seed in sorted({*study.seeds, study.search.search_seed}) if dataset.kshot_dir else [study.search.search_seed]:
                k_shot_splits(dataset, k, seed, study.kshot_sampler)
    except (DataError, KShotError, ValueError) as err:
        raise StudyError(str(err)) from None
    try:
        check_writable(study_dir, min_free_bytes=MIN_FREE_BYTES)
    except OSError as err:
        raise StudyError(str(err)) from None
    return dataset.label_map


def with_default_data(study: StudyConfig) -> StudyConfig:
    """The study on the bundled SemEval (study/datasets) where it names no data set and cloce's
    default ($CLOCE_DATA_DIR, ../shared/datasets/semeval) has none: a study runs on any machine."""
    from dataclasses import replace

    from study.datasets import default_study_data_dir

    if study.data_dir or study.requires_data_dir:
        return study
    bundled = default_study_data_dir()
    if bundled is None:
        return study
    print(f"data: the bundled SemEval-2010 Task 8 (study/datasets/SEMEVAL.md), unpacked in {bundled}", flush=True)
    return replace(study, data_dir=str(bundled))


def choose_study_dir(study: StudyConfig, requested: str | None, resume: bool) -> Path:
    """runs/<name> by default; a new study never overwrites an old one's results."""
    if requested:
        return Path(requested)
    base = Path("runs") / study.name
    if resume:
        earlier = sorted(Path("runs").glob(f"{study.name}*"), key=lambda p: p.stat().st_mtime) if Path("runs").exists() else []
        if not earlier:
            raise StudyError(f"--resume: no earlier study of {study.name!r} under runs/; pass --study-dir")
        return earlier[-1]
    return base if not base.exists() else Path("runs") / f"{study.name}-{time.strftime('%Y%m%d-%H%M%S')}"


# Measured on a 2-core machine (tiny trials): 36 s -> 21 s of Ray overhead per trial, mostly
# fewer processes started per trial. They only switch off monitoring a study does not need.
FAST_TRIAL_ENV = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_STATE_ACTOR_RECONCILIATION": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    # Tune's new console output crashes on a failed trial in Ray 2.60 (its start time is reset
    # to None, then formatted): the legacy reporter, silent at verbose=0; study/driver/progress.py prints.
    "RAY_AIR_NEW_OUTPUT": "0",
    # Keeping one checkpoint per trial (num_to_keep=1) makes Tune snapshot the experiment state
    # on every report and print a bottleneck warning each time; a cell's state is a few kB.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    # Tune's default JSON, CSV and TensorBoard loggers write every result of every trial again
    # (result.json, progress.csv, an event file); MLflow and the results file hold them, and
    # nothing here reads them. They were 9% of the driver's CPU at 16 slots (py-spy,
    # benchmarks/results/RESULTS.md). Set it to 0 to have them back.
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
}


def start_ray(address: str | None, num_cpus: int | None, offline: bool) -> None:
    import ray

    env = {"HF_HUB_OFFLINE": "1"} if offline else {}
    env |= {"TOKENIZERS_PARALLELISM": "false"} | FAST_TRIAL_ENV
    for key, value in env.items():
        os.environ.setdefault(key, value)  # read by this process's Ray too, not only the workers
    if address:
        ray.init(address=address, runtime_env={"env_vars": env})
        return
    # Ray starts its workers at niceness 15: next to any other busy process on a laptop they
    # starve (minutes to start a trial). Trials are the work here; run them at normal priority.
    os.environ.setdefault("RAY_worker_niceness", "0")
    # A local runtime: the dashboard stays off (and would listen on 127.0.0.1 only).
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=False,
        dashboard_host="127.0.0.1",  # should a user turn the dashboard on: this machine only
        resources={"trial_driver": 1000},  # Tune trial drivers reserve one each (study/driver/cells.py)
        runtime_env={"env_vars": env},
        log_to_driver=False,
        configure_logging=False,
    )


def run_study(study: StudyConfig, args, plugins: Sequence[TrialPlugin] = (),
              trial_function: TrialFunction | None = None) -> str:
    """`plugins`: TrialPlugins every trial calls (study/trial/plugins.py); `trial_function`: what
    each trial runs instead of run_trial (TrialContext.trial_function). The study command passes neither."""
    from study.driver.progress import ProgressPrinter
    from study.driver.cells import run_study_cells
    from study.reporting.tables import fewshot_table, to_markdown

    study_dir = choose_study_dir(study, args.study_dir, args.resume)
    if args.address and not (args.study_dir and args.tracking_uri and args.storage_path):
        # Under `ray job submit` the working directory is a temporary copy on the head node.
        print("warning: on a cluster pass --study-dir, --tracking-uri and --storage-path on shared storage; "
              "the defaults live in the job's temporary working directory and are lost with it", flush=True)
    study = with_default_data(study)
    study = study.with_label_decisions(preflight(study, study_dir))
    ledger = open_ledger(getattr(args, "results_file", None))
    uri = tracking.resolve_tracking_uri(args.tracking_uri)
    try:
        experiment_id, parent_id = tracking.start_parent_run(
            uri, f"cloce-{study.name}", str(study_dir.resolve()), params=study.to_dict(),
            tags={"study": study.name, "study_dir": str(study_dir), "kshot_sets": study.kshot_sets()}, run_name=f"study {study_dir.name}",
        )
    except Exception as err:
        raise StudyError(f"cannot use the MLflow store {uri!r}: {err}") from None
    print(f"study {study.name}: {len(study.variants)} variants x K {list(study.ks)} x seeds {list(study.seeds)}; "
          f"dir {study_dir}; MLflow {uri} (parent run {parent_id})", flush=True)

    start_ray(args.address, args.num_cpus, offline=study.model is None)
    storage = args.storage_path or str((study_dir / "train").resolve())
    base = TrialContext(study, "search", "", 0, storage, uri, experiment_id, parent_id, local_runtime=not args.address,
                        plugins=tuple(plugins), trial_function=trial_function)
    try:
        finals = run_study_cells(study, base, study_dir, args.resume, [ProgressPrinter()], ledger)
    except BaseException:
        tracking.end_run(uri, parent_id, "FAILED")
        raise
    attach_results(study, finals, study_dir, uri, parent_id)
    tracking.end_run(uri, parent_id, "FINISHED")
    failed = [r for r in finals if r["status"] != "FINISHED"]
    if failed:
        cells = sorted({f"{r['variant']} K={r['k']} seed {r['seed']}" for r in failed})
        print(f"{len(failed)} of {len(finals)} trials failed ({'; '.join(cells)}): their cells are marked "
              "in the table; MLflow holds each FAILED run with its error.txt", flush=True)
    table = fewshot_table(finals, study.variants, study.ks, study.seeds, study.kshot_sets())
    # What the study ends with: its table, then where its parent run is in the MLflow UI.
    return to_markdown(table) + "\n" + mlflow_ui.ui_hint(uri, experiment_id, parent_id)


def open_ledger(path: str | None):
    """The results file of finished trials (study/driver/ledger.py), checked before Ray starts."""
    if not path:
        return None
    from cloce.run import check_writable
    from study.driver.ledger import TrialLedger

    try:
        check_writable(Path(path).parent)
        ledger = TrialLedger(path)
    except (OSError, ValueError) as err:
        raise StudyError(f"--results-file: {err}") from None
    if ledger.records:
        print(f"results file {path}: {len(ledger.records)} finished trials, not run again", flush=True)
    return ledger


def attach_results(study: StudyConfig, finals: list[dict], study_dir: Path, uri: str, parent_id: str) -> None:
    """Tables (markdown + CSV, and the few-shot table as an MLflow table), plots, chosen configs
    and the sampled K-shot ids on the parent run; per-seed and per-cell test F1 as its metrics."""
    from study.reporting.plots import plot_f1_vs_k, plot_learning_curves
    from study.reporting.comparisons import comparison_display, comparison_frames
    from study.reporting.files import write_tables
    from study.reporting.tables import fewshot_table

    out = study_dir / "tables"
    # Variant vs reference: paired t over seeds, bootstrap over sentences (comparisons.md).
    comparisons = comparison_frames(finals, study.variants, study.seeds)
    paths = list(write_tables(finals, study.variants, study.ks, study.seeds, out, comparisons,
                              kshot_sets=study.kshot_sets()).values())
    paths.append(plot_learning_curves(finals, out / "learning_curves.png", study.variants))
    paths.append(plot_f1_vs_k(finals, out / "f1_vs_k.png", study.variants))
    (out / "final_trials.json").write_text(json.dumps(finals, indent=1, default=str))
    (out / "kshot_ids.json").write_text(json.dumps(kshot_ids(study), indent=1))
    paths += [out / "final_trials.json", out / "kshot_ids.json"]
    tracking.log_files(uri, parent_id, paths, "results")
    # The few-shot table as an MLflow table (results/fewshot_table.json, `MlflowClient.load_table`).
    table = fewshot_table(finals, study.variants, study.ks, study.seeds, study.kshot_sets())
    tracking.log_table(uri, parent_id, table.to_dict(as_series=False), "results/fewshot_table.json")
    tracking.log_table(uri, parent_id, comparison_display(*comparisons)[0].to_dict(as_series=False),
                       "results/comparisons.json")
    summary = {f"{r['variant']}_K{r['k']}_seed{r['seed']}_test_micro_f1": r["test_micro_f1"] for r in finals if r["test_micro_f1"] is not None}
    summary |= cell_metrics(finals, study.variants, study.seeds)
    tracking.log_metrics(uri, parent_id, summary)


# Parent-run metric name -> fewshot_numbers column.
CELL_STATS = {name: name for name in ("test_micro_f1_mean", "test_micro_f1_std", "test_macro_f1_mean",
                                      "test_macro_f1_std")} | {"seeds": "n"}


def cell_metrics(finals: list[dict], variants, seeds) -> dict[str, float]:
    """Each (variant, K) cell's summary as parent-run metrics, so the runs table can sort and
    chart them: `<variant>_K<k>_test_micro_f1_mean` / `_std` (fractions, sample std over the
    study's seeds that finished: the few-shot table's numbers), the same for SemEval macro-F1
    where there is one, and `<variant>_K<k>_seeds` (how many finished). K0 is the full training
    set. A std of one seed, or a cell with no finished seed, is not logged."""
    from study.reporting.tables import fewshot_numbers

    expected = set(seeds)
    numbers = fewshot_numbers([r for r in finals if r.get("seed") in expected], variants)
    metrics: dict[str, float] = {}
    for row in numbers.iter_rows(named=True):
        for name, column in CELL_STATS.items():
            if row[column] is not None:
                metrics[f"{row['variant']}_K{row['k']}_{name}"] = float(row[column])
    return metrics


def study_dataset(study: StudyConfig):
    from cloce.data.dataset import load_dataset

    data = study.data_config()
    return load_dataset(data.data_dir, train=data.train, val=data.val, test=data.test, fmt=data.format,
                        kshot_dir=data.kshot_dir)


def kshot_ids(study: StudyConfig) -> dict:
    """Which K-shot sets the study used (`StudyConfig.kshot_sets`) and the training ids of
    every (K, seed) set: a set depends on (K, seed) only, never on the variant."""
    from cloce.data.kshot_sets import k_shot_splits

    dataset = study_dataset(study)
    samples = {}
    for k in study.ks:
        if k == 0:
            continue
        for seed in sorted({*study.seeds, study.search.search_seed}):
            samples[f"K{k}-seed{seed}"] = list(k_shot_splits(dataset, k, seed, study.kshot_sampler).sample.ids)
    return {"kshot_sets": study.kshot_sets(), "samples": samples}
