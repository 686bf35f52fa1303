"""The stand-in trial of the scale benchmark (benchmarks/bench_scale.py): what a Tune trial runs
in place of study.trial.trainable.run_trial, plugged in through TrialContext.trial_function.

It keeps everything of a trial the driver sees and pays for: the MLflow child run (created,
per-epoch metrics, the summary, history.json, ended), a Tune report per epoch with
`best_val_micro_f1` / `epochs_done`, and the final report run_trial sends (`final`, test F1,
`history_json`, `test_labels_json` for the paired bootstrap). In place of training it sleeps
a drawn "epoch" time; its F1 values are drawn, plausible, and mean nothing. No torch, no
transformers, no TorchTrainer: 64 of these fit on 2 cores.

Each trial also appends one JSON line (its process, start and end, tracking seconds) to the
file named by $BENCH_SCALE_TIMINGS: the benchmark's record of when each slot was busy.
"""
from __future__ import annotations

import json
import math
import os
import random
import time

EPOCH_S_ENV = "BENCH_SCALE_EPOCH_S"  # "20-60": each epoch sleeps uniform(20, 60) s
TIMINGS_ENV = "BENCH_SCALE_TIMINGS"
TEST_SENTENCES = 300  # quick's test_sample
LABELS = 19  # SemEval's directed labels, 0 = Other


def epoch_range() -> tuple[float, float]:
    low, _, high = os.environ.get(EPOCH_S_ENV, "20-60").partition("-")
    return float(low), float(high or low)


def plausible_f1(config: dict, epoch: int, epochs: int, rng: random.Random) -> float:
    """Better near lr 2e-4 and at later epochs, plus noise: an Optuna search has a slope to follow."""
    lr = float(config.get("lr", 2e-4))
    closeness = math.exp(-abs(math.log10(lr / 2e-4)))
    return max(0.0, min(1.0, 0.25 + 0.45 * closeness * epoch / epochs + rng.gauss(0, 0.03)))


def test_labels(f1: float, rng: random.Random) -> dict:
    gold = [rng.randrange(LABELS) for _ in range(TEST_SENTENCES)]
    pred = [g if rng.random() < f1 else rng.randrange(LABELS) for g in gold]
    return {"gold": gold, "pred": pred, "no_relation_id": 0}


def standin_trial(config: dict, context) -> None:
    import ray.tune

    from study.tracking import runs as tracking
    from study.trial import phases
    from study.trial.trainable import SEARCHED, trial_key

    phases.reset()
    started = time.time()
    trial_id = ray.tune.get_context().get_trial_id()
    seed = int(config["seed"])
    stage = config.get("stage", context.stage)
    key = trial_key(stage, context.variant, context.k, seed, trial_id)
    train_config = context.study.train_config(context.variant, context.k, seed,
                                              **{n: config[n] for n in SEARCHED if n in config})
    epochs = train_config.epochs
    rng = random.Random(f"{key}/{config}")
    with phases.phase("tracking"):
        run_id = tracking.child_run(
            context.tracking_uri, context.experiment_id, context.parent_run_id, key,
            params=train_config.to_dict() | {"stage": stage, "workers": 0, "use_gpu": False},
            tags={"variant": context.variant, "k": str(context.k), "seed": str(seed), "stage": stage,
                  "trial_id": trial_id})
    low, high = epoch_range()
    best, best_epoch, history, logged = 0.0, 1, [], set()
    for epoch in range(1, epochs + 1):
        slept = rng.uniform(low, high)
        time.sleep(slept)
        f1 = plausible_f1(config, epoch, epochs, rng)
        if f1 > best:
            best, best_epoch = f1, epoch
        history.append({"epoch": epoch, "val_micro_f1": f1, "train_loss": 2.5 / epoch, "seconds": slept})
        metrics = {"val_micro_f1": f1, "train_loss": 2.5 / epoch, "best_val_micro_f1": best, "epochs_done": epoch}
        with phases.phase("tracking"):
            tracking.log_epoch_metrics(context.tracking_uri, run_id, metrics, step=epoch, logged=logged)
        if epoch < epochs:
            ray.tune.report(metrics)
    test_f1 = max(0.0, best + rng.gauss(0, 0.02))
    final = {"best_val_micro_f1": best, "val_micro_f1": best, "best_epoch": best_epoch, "epochs_done": epochs,
             "final": 1, "test_micro_f1": test_f1, "test_macro_f1_semeval": test_f1 * 0.97,
             "test_wrong_direction_rate": 0.05, "test_undirected_accuracy": min(1.0, test_f1 + 0.05),
             "world_size": 1, "bf16_active": 0, "sentence_markers_active": 1}
    with phases.phase("tracking"):
        tracking.log_metrics(context.tracking_uri, run_id, {n: final[n] for n in
                                                           ("best_val_micro_f1", "best_epoch", "epochs_done",
                                                            "test_micro_f1", "test_macro_f1_semeval")})
        tracking.log_json(context.tracking_uri, run_id, history, "history.json")
        tracking.end_run(context.tracking_uri, run_id, "FINISHED")
    spent = phases.report()
    ended = time.time()
    path = os.environ.get(TIMINGS_ENV)
    if path:
        line = json.dumps({"trial_key": key, "pid": os.getpid(), "start": started, "end": ended,
                           "tracking_s": spent.get("phase_tracking_s", 0.0), "epochs": epochs})
        with open(path, "a") as out:  # one short write per line, O_APPEND: lines never interleave
            out.write(line + "\n")
    ray.tune.report(final | {"trial_key": key, "run_id": run_id, "history_json": json.dumps(history),
                             "test_labels_json": json.dumps(test_labels(test_f1, rng))} | spent)
