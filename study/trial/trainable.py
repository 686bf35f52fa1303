"""One Tune trial = a driver function that runs one cloce training as a Ray Train
`TorchTrainer` (Train V2: passing a Trainer straight to a Tuner is deprecated).

With `workers_per_trial = 0` the TorchTrainer runs in Ray Train's local mode: the loop runs
in this trial's own process, which Tune keeps between trials (reuse_actors), so a trial
starts with torch, transformers and cloce already imported and no worker group to build."""
from __future__ import annotations

import dataclasses
import json
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from study.trial import phases
from study.tracking import runs as tracking
from study.tracking import retry as tracking_retry
from study.trial.checkpoint_cleanup import discard_checkpoint
from study.trial.plugins import TrialPlugin
from study.configuration.study_config import StudyConfig
from study.ray_workarounds import lean_trainer_class

SEARCHED = ("lr", "cl_lr", "margin", "virtual_lr")
# What a Tune trial runs, `f(config, context)`: run_trial, or a stand-in (TrialContext.trial_function).
TrialFunction = Callable[[dict, "TrialContext"], None]


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one (stage, variant, K) cell shares; bound with tune.with_parameters."""

    study: StudyConfig
    stage: str  # "search" or "final": a trial's own config["stage"] overrides it (study/driver/cell_search.py)
    variant: str
    k: int
    storage_path: str  # Ray Train run storage (shared file system or s3:// on a cluster)
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    local_runtime: bool = False  # the Ray runtime this study started itself (no cluster)
    plugins: tuple[TrialPlugin, ...] = ()  # every trial calls them (study/trial/plugins.py); the study command passes none
    # A seam: the function each Tune trial runs, `f(config, context)`; None is run_trial (the
    # study command never sets it). A benchmark of the driver alone plugs in a stand-in here
    # (benchmarks/bench_scale.py); it must report as run_trial does and be importable in the trials.
    trial_function: TrialFunction | None = None


def trial_key(stage: str, variant: str, k: int, seed: int, trial_id: str) -> str:
    """Stable across restores: search trials by Tune trial id, final trials by seed."""
    label = trial_id if stage == "search" else f"seed{seed}"
    return f"{stage}/{variant}/K{k}/{label}"


def run_trial(config: dict, context: TrialContext) -> None:
    import ray.train
    import ray.train.torch
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    # Here, not at the top: the worker imports torch, and a trial process that unpickles a
    # TrialContext to run a stand-in (TrialContext.trial_function) need not.
    from study.trial.worker import read_final, train_loop_per_worker

    phases.reset()  # this trial's clock; the process may have run others before (reuse_actors)
    trial_id = ray.tune.get_context().get_trial_id()
    seed = int(config["seed"])
    stage = config.get("stage", context.stage)  # both stages of a cell share one Tuner
    hyper = {name: config[name] for name in SEARCHED if name in config}
    train_config = context.study.train_config(context.variant, context.k, seed, **hyper)
    resources = context.study.resources
    local_mode = resources.workers_per_trial == 0
    if train_config.num_threads is None:
        # Each worker owns cpus_per_worker cores; more torch threads would fight other trials.
        train_config = dataclasses.replace(train_config, num_threads=resources.cpus_per_worker)
    key = trial_key(stage, context.variant, context.k, seed, trial_id)
    with phases.phase("tracking"):
        run_id = tracking.child_run(
            context.tracking_uri, context.experiment_id, context.parent_run_id, key,
            # With the worker's tags bf16_active and world_size: everything that changes the numbers.
            params=train_config.to_dict() | {"stage": stage, "workers": resources.workers_per_trial,
                                             "use_gpu": resources.use_gpu, "kshot_sets": context.study.kshot_sets()},
            tags={"variant": context.variant, "k": str(context.k), "seed": str(seed), "stage": stage,
                  "trial_id": trial_id},
        )
    run_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", key)
    trainer = lean_trainer_class(context.local_runtime)(
        train_loop_per_worker,
        train_loop_config={
            "train": train_config.to_dict(),
            "data": vars(context.study.data_config()),
            "tracking_uri": context.tracking_uri,
            "run_id": run_id,
            "local_mode": local_mode,
            "run_name": run_name,
            "checkpoint_every_s": resources.checkpoint_every_s,
            "plugins": context.plugins,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=resources.workers_per_trial,
            use_gpu=resources.use_gpu,
            resources_per_worker={"CPU": resources.cpus_per_worker}
            | ({"GPU": resources.gpus_per_worker} if resources.use_gpu else {}),
        ),
        run_config=ray.train.RunConfig(
            # Deterministic: a restored trial finds its Train run and resumes from its checkpoint.
            name=run_name,
            storage_path=context.storage_path,
            failure_config=ray.train.FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            # Local mode reports to Tune itself: the callback would only start a queue actor per trial.
            callbacks=[] if local_mode else [TuneReportCallback()],
        ),
    )
    try:
        result = trainer.fit()
        if local_mode:
            final = dict(result.return_value or {})
        else:
            final = read_final(result.checkpoint) if result.checkpoint else {}
        if "final" not in final and "error" not in final:
            raise RuntimeError(f"trial {key} ended without a final report (last metrics: {result.metrics})")
        if not local_mode:  # read: the Train run's last checkpoint is spent (Tune's: study.driver.cells)
            discard_checkpoint(result.checkpoint)
    except Exception as err:  # record the failure where users look, then let Tune retry or mark the trial
        mark_failed(context.tracking_uri, run_id, str(err), "".join(traceback.format_exception(err)))
        raise
    if "error" in final:
        # Deterministic (a NaN loss): a retry would only fail again, so the trial ends here,
        # reported as failed, instead of raising into Tune's retries.
        mark_failed(context.tracking_uri, run_id, f"trial {key} failed: {final['error']}")
        ray.tune.report({"trial_key": key, "run_id": run_id, "error": f"trial {key} failed: {final['error']}",
                         "best_val_micro_f1": float("nan")})  # the objective Tune insists on (worker.report_failure)
        return
    with phases.phase("tracking"):
        tracking.end_run(context.tracking_uri, run_id, "FINISHED")
    history = final.pop("history", [])
    # Strings, as the history: Tune's loggers take scalars (a test set is thousands of ids).
    labels = {"test_labels_json": json.dumps(final.pop("test_labels"))} if "test_labels" in final else {}
    ray.tune.report(final | {"trial_key": key, "run_id": run_id, "history_json": json.dumps(history)} | labels
                    | phases.report())


def mark_failed(tracking_uri: str, run_id: str, reason: str, details: str | None = None) -> None:
    try:
        tracking.log_text(tracking_uri, run_id, details or reason, "error.txt")
        tracking.set_tags(tracking_uri, run_id, {"error": reason[:500]})
        tracking.end_run(tracking_uri, run_id, "FAILED")
    except tracking_retry.TrackingUnavailable as err:
        # The trial's own failure is what Tune must see (and retry); this one is only printed.
        print(f"[tracking] could not mark run {run_id} failed ({reason[:200]}): {err}", flush=True)


def trial_record(result_metrics: dict, config: dict, variant: str, k: int, stage: str, error: str | None = None) -> dict:
    """A finished (or failed) trial as the tables want it."""
    metrics = result_metrics or {}
    error = error or metrics.get("error")
    finished = error is None and "final" in metrics
    return {
        "variant": variant,
        "k": k,
        "seed": int(config.get("seed", 0)),
        "stage": stage,
        "status": "FINISHED" if finished else "FAILED",
        "error": error,
        "trial_key": metrics.get("trial_key"),
        "config": {name: config[name] for name in SEARCHED if name in config},
        "val_micro_f1": metrics.get("val_micro_f1") if finished else None,
        "test_micro_f1": metrics.get("test_micro_f1") if finished else None,
        "test_macro_f1_semeval": metrics.get("test_macro_f1_semeval") if finished else None,
        # Directed labels only (SemEval): right type, wrong direction; accuracy ignoring direction.
        "test_wrong_direction_rate": metrics.get("test_wrong_direction_rate") if finished else None,
        "test_undirected_accuracy": metrics.get("test_undirected_accuracy") if finished else None,
        "best_epoch": metrics.get("best_epoch") if finished else None,
        # How it ran, where that changes numbers (the fingerprint holds what the driver expected).
        "world_size": metrics.get("world_size"),
        "bf16_active": bool(metrics["bf16_active"]) if "bf16_active" in metrics else None,
        # What train.sentence_markers decided (unset: by the labels); absent before it existed.
        "sentence_markers_active": bool(metrics["sentence_markers_active"]) if "sentence_markers_active" in metrics else None,
        "history": json.loads(metrics.get("history_json", "[]")) if finished else [],
        # {"gold": [...], "pred": [...], "no_relation_id": i}: the paired bootstrap's input.
        "test_labels": json.loads(metrics["test_labels_json"]) if finished and "test_labels_json" in metrics else None,
    }
