"""Ray overhead (5): a small study through the real study system (Ray Tune, one Ray Train
TorchTrainer per trial, MLflow, tables) vs the same trials run one after another in-process
with cloce's `train`. Ray's own start-up (ray.init) is timed apart; so is the cost of one
trial's Ray machinery on its own (a trivial TorchTrainer trial)."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_memory import TreeMemorySampler
from benchmarks.common import timed
from cloce.data.dataset import load_dataset
from cloce.train import train
from study.driver import study_run as driver
from study.configuration.study_file import load_study_config


def study_on_ray_vs_in_process(seeds=(1, 2, 3), epochs: int = 4, k: int = 8, workers: int = 1,
                               overrides: dict | None = None) -> dict:
    """`workers` per trial: 1, the issue's set-up (a TorchTrainer with one worker), or 0, Ray
    Train's local mode (the loop in the Tune trial's process; the one-machine default).
    The fixed cost per trial is printed apart from the study's own (Ray, MLflow parent run,
    tables): each trial reports where its seconds went (study/trial/phases.py)."""
    study = load_study_config("quick", _small_overrides(seeds, epochs, k, workers) | (overrides or {}))
    configs = [study.train_config("finetune", k, seed, **study.default_hyperparams("finetune")) for seed in seeds]
    dataset = load_dataset(None)
    in_process = timed(lambda: [train(config, dataset) for config in configs])

    import ray

    # trial_phases reads each trial's result.json: Tune's JSON logger stays on here.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0"
    ray.shutdown()  # a runtime of its own: 5 and 5c run one after another in one process
    ray_init = timed(lambda: driver.start_ray(None, 2, offline=True))
    real_start_ray, driver.start_ray = driver.start_ray, lambda *args, **kwargs: None
    try:
        with tempfile.TemporaryDirectory() as work:
            args = argparse.Namespace(study_dir=str(Path(work) / "study"), resume=False, address=None,
                                      tracking_uri=f"sqlite:///{work}/mlflow.db", storage_path=None, num_cpus=2)
            with TreeMemorySampler() as memory:
                on_ray = timed(lambda: driver.run_study(study, args))
            trials = trial_phases(Path(work) / "study" / "tune")
    finally:
        driver.start_ray = real_start_ray
    return {"workers_per_trial": workers, "trials": len(seeds), "epochs": epochs, "k": k, "in_process_s": in_process,
            "ray_study_s": on_ray,
            "ray_init_s": ray_init, "ratio": on_ray / in_process, "target": "<= 1.3" if workers else "<= 1.15",
            "per_trial_overhead_s": (on_ray - in_process) / len(seeds),
            **fixed_costs(trials, on_ray, in_process / len(seeds)),
            "checkpoint_every_s": study.resources.checkpoint_every_s,
            "study_peak_rss_mib": memory.peak / 2**20}


def _small_overrides(seeds, epochs, k, workers) -> dict:
    return {
        "study.variants": ["finetune"], "study.ks": [k], "study.seeds": list(seeds), "search.enabled": False,
        "train.epochs": epochs, "train.test_sample": 300, "train.num_threads": 2,
        "resources.workers_per_trial": workers, "resources.cpus_per_worker": 2, "search.max_concurrent_trials": 1,
    }


def trial_phases(tune_dir: Path) -> list[dict]:
    """Each finished trial's last result (its summary with `trial_s` and `phase_*_s`)."""
    finals = []
    for path in tune_dir.glob("**/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        finals += [r for r in lines if "trial_s" in r]
    return sorted(finals, key=lambda r: r["timestamp"])


def fixed_costs(trials: list[dict], study_s: float, in_process_per_trial: float) -> dict:
    """The study's wall time split: the study's own set-up and wrap-up (before the first trial
    starts, after the last ends), and per trial what is not its training loop: wall time of
    the trials back to back (the gaps between them included) minus the loop's seconds
    (`train`: data prepared, epochs, test; the same work as one in-process `train` call)."""
    if not trials:
        return {"fixed_cost_note": "no trial reported its phases"}
    starts = [r["timestamp"] - r["trial_s"] for r in trials]
    span = max(r["timestamp"] for r in trials) - min(starts)
    loop = [r.get("phase_train_s", r.get("worker_phase_train_s", 0.0)) for r in trials]
    names = sorted({name for r in trials for name in r if name.startswith(("phase_", "worker_phase_"))})
    return {
        "study_fixed_s": study_s - span,
        "per_trial_fixed_s": (span - sum(loop)) / len(trials),
        "per_trial_loop_s": statistics.mean(loop),
        "in_process_per_trial_s": in_process_per_trial,
        "per_trial_phases_s": {name.removesuffix("_s"): round(statistics.mean(r.get(name, 0.0) for r in trials), 3)
                               for name in names if name not in ("phase_train_s", "worker_phase_train_s")},
    }


def trivial_trial_cost(trials: int = 4) -> dict:
    """Wall time of Tune trials whose TorchTrainer does nothing but report once, one at a
    time: the fixed cost of a trial's Ray machinery (controller, worker group, reporting),
    for the stock TorchTrainer, the lean one (study/trial/trainable.py) and Ray Train's local mode
    (num_workers=0: the loop runs in the Tune trial's process; the `quick` study's setting)."""
    import ray
    import ray.train
    import ray.train.torch
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from study.ray_workarounds import lean_trainer_class

    # A Ray runtime of its own, with more logical CPUs than cores: on Ray 2.60 a stock
    # TorchTrainer trial that ends at once can leave its worker group's placement group behind
    # (holding a CPU), and with 2 logical CPUs the third trial then waits forever. Leaked groups
    # hold no physical core, so spare logical CPUs keep the timings honest; they are counted.
    ray.shutdown()
    driver.start_ray(None, 2 + 3 * trials, offline=True)

    def loop(_config):
        ray.train.report({"done": 1})

    def local_loop(_config):
        ray.tune.report({"done": 1})  # local mode: Ray Train refuses its own report inside Tune

    def drive(config, kind: str, storage: str):
        trainer_class = lean_trainer_class(local_runtime=True) if kind == "lean" else ray.train.torch.TorchTrainer
        workers = 0 if kind == "local" else 1
        trainer = trainer_class(local_loop if workers == 0 else loop,
                                scaling_config=ray.train.ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
                                run_config=ray.train.RunConfig(name=f"trivial-{kind}-{config['i']}", storage_path=storage,
                                                               callbacks=[TuneReportCallback()]))
        trainer.fit()

    seconds: dict[str, float | None] = {}
    leftovers: dict[str, str] = {}
    leaked: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as storage:
        for kind in ("stock", "lean", "local"):
            # Give the last contender's worker groups a moment to go; what stays is reported.
            held = wait_for_free_cpus(timeout_s=30)
            if held:
                leaked[kind] = held
            resources = {"CPU": 1} if kind == "local" else {"CPU": 0, "trial_driver": 1}
            tuner = ray.tune.Tuner(
                ray.tune.with_resources(ray.tune.with_parameters(drive, kind=kind, storage=storage), resources),
                param_space={"i": ray.tune.grid_search(list(range(trials)))},
                # No actor reuse: every trial pays its process start, as each cell's trials do in a study.
                # A bound, so a trial that never gets its worker ends the benchmark instead of hanging it.
                tune_config=ray.tune.TuneConfig(max_concurrent_trials=1, reuse_actors=False,
                                                time_budget_s=TRIVIAL_BUDGET_S * trials),
                run_config=ray.tune.RunConfig(storage_path=storage, name=f"trivial-{kind}-{time.time_ns()}", verbose=0),
            )
            started = time.perf_counter()
            results = tuner.fit()
            elapsed = time.perf_counter() - started
            done = sum(1 for result in results if result.metrics and result.metrics.get("done"))
            seconds[kind] = elapsed / trials if done == trials else None
            if done < trials:
                leftovers[kind] = f"{trials - done} of {trials} trials unfinished after {elapsed:.0f} s"
    report = {"trials": trials, "stock_torchtrainer_s_per_trial": seconds["stock"],
              "lean_torchtrainer_s_per_trial": seconds["lean"], "local_mode_s_per_trial": seconds["local"]}
    held = wait_for_free_cpus(timeout_s=30)
    extras = {"not_measured": leftovers, "held_before_contender": leaked, "left_held": held}
    return report | {name: value for name, value in extras.items() if value}


TRIVIAL_BUDGET_S = 120  # per trivial trial: 3-11 s on a quiet 2-core machine


def wait_for_free_cpus(timeout_s: float) -> str | None:
    """None once every CPU of the cluster is free again, else what still holds some."""
    import ray
    from ray.util import placement_group_table

    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) >= total:
            return None
        time.sleep(1)
    alive = [pg for pg in placement_group_table().values() if pg["state"] != "REMOVED"]
    return (f"{total - ray.available_resources().get('CPU', 0):g} CPUs still held after {timeout_s:.0f} s "
            f"by {len(alive)} placement groups ({', '.join(str(pg['bundles']) for pg in alive[:3])})")

