"""Scale benchmark (issue 26): the real study driver at 64 (or 256) trial slots, ~1,000 trials
over 21 cells (7 variants x K 4/8/16, Optuna search + seeds 1-5), trials replaced by a stand-in
that sleeps a drawn epoch time (benchmarks/scale_standin.py, plugged in by
benchmarks/scale_driver.py; no torch). Everything else is the study command's: the cell pool,
one Tuner + OptunaSearch per cell in threads, the study-wide slot limit, the ledgerless Tune
state, MLflow parent and child runs in ./mlflow.db (SQLite, the local default), the tables,
comparisons and plots on the parent run.

    python -m benchmarks.bench_scale --slots 64 --trials 1000              # ~25 min
    python -m benchmarks.bench_scale --slots 16 --trials 100 --epoch-s 2-5  # ~2 min
    python -m benchmarks.bench_scale --slots 16 --trials 100 --epoch-s 2-5 --resume-check

A slot is the logical CPU a trial holds (`--num-cpus SLOTS`, `resources.max_running_trials =
SLOTS`): it stands for a cluster's GPU. Busy = from the stand-in's first line to its last
(process start-up and Tune's hand-over count as idle). Results print and go to
benchmarks/results/scale-<slots>-<trials>.json, rewritten as they come.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.run import commit  # the harness's own: short HEAD, "+uncommitted changes"

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ["finetune", "ptr", "knowprompt", "prompt", "prompt_ki", "cloce_s", "cloce_d"]
KS = [4, 8, 16]
SEEDS = [1, 2, 3, 4, 5]  # seed 1 is the search seed: its chosen search run stands as its final run


def study_args(args, study_dir: Path, num_samples: int) -> list[str]:
    return ["--experiment", "quick", "--variants", *VARIANTS, "--ks", *map(str, KS), "--seeds", *map(str, SEEDS),
            "--num-samples", str(num_samples), "--epochs", str(args.epochs), "--num-cpus", str(args.slots),
            "--max-running-trials", str(args.slots), "--max-concurrent-trials", "0",
            "--study-dir", str(study_dir), "--tracking-uri", f"sqlite:///{study_dir}/mlflow.db"]


def launch(args, study_dir: Path, num_samples: int, timings: Path, driver_out: Path, resume: bool):
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
                        "PYTHONPATH": str(REPO),
                        # On a loaded machine the raylet gave up waiting for its metrics agent (30 s).
                        "RAY_agent_register_timeout_ms": "300000", "BENCH_SCALE_EPOCH_S": args.epoch_s,
                        "BENCH_SCALE_TIMINGS": str(timings), "BENCH_SCALE_DRIVER_OUT": str(driver_out)}
    if args.hand_over_s is not None:
        env["BENCH_SCALE_HAND_OVER_S"] = str(args.hand_over_s)
    if args.idle_wait_s is not None:
        env["BENCH_SCALE_IDLE_WAIT_S"] = str(args.idle_wait_s)
    command = [sys.executable, "-m", "benchmarks.scale_driver", *study_args(args, study_dir, num_samples)]
    command += ["--resume"] if resume else []
    log = open(study_dir.parent / f"{study_dir.name}{'-resume' if resume else ''}.log", "a")  # noqa: SIM115 (the driver's, open while it runs)
    # Its own session: a kill takes the driver and the Ray runtime it started, nothing else.
    return subprocess.Popen(command, env=env, cwd=study_dir.parent, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def slot_use(trials: list[dict], slots: int) -> dict:
    """Mean running / slots over the trials' span, and over its ramp-up (until `slots` run at
    once, or the peak), steady part and tail (after the last trial started) apart."""
    if not trials:
        return {}
    events = sorted([(t["start"], 1) for t in trials] + [(t["end"], -1) for t in trials])
    span0, span1 = events[0][0], events[-1][0]
    peak = running = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    full = next(t for t, now_running in _running_curve(events) if now_running >= min(slots, peak))
    last_start = max(t["start"] for t in trials)

    def mean_between(a: float, b: float) -> float | None:
        if b <= a:
            return None
        area, running, previous = 0.0, 0, a
        for time_, step in events:
            clipped = min(max(time_, a), b)
            area += running * (clipped - previous)
            previous = clipped
            running += step
        return round(area / (b - a) / slots, 3)

    return {"trials": len(trials), "span_s": round(span1 - span0, 1), "peak_running": peak,
            "slot_use": mean_between(span0, span1), "ramp_up_s": round(full - span0, 1),
            "ramp_up_use": mean_between(span0, full), "steady_use": mean_between(full, last_start),
            "tail_s": round(span1 - last_start, 1), "tail_use": mean_between(last_start, span1)}


def _running_curve(events):
    running = 0
    for time_, step in events:
        running += step
        yield time_, running


def slot_gaps(trials: list[dict], slots: int) -> dict:
    """The time from a trial's end to the next trial's start in the slot it freed. Slots are
    not named; while trials are waiting (after the ramp-up, before the tail) the n-th trial
    to end frees the slot the (n + slots)-th to start takes. Beside it, the same in one trial
    process (Tune reuses a cell's process for its next trial)."""
    starts = sorted(t["start"] for t in trials)
    ends = sorted(t["end"] for t in trials)
    gaps = [starts[n + slots] - ends[n] for n in range(len(ends)) if n + slots < len(starts)]
    by_pid: dict[int, list[dict]] = {}
    for t in trials:
        by_pid.setdefault(t["pid"], []).append(t)
    same = [b["start"] - a["end"] for runs in by_pid.values()
            for a, b in zip(sorted(runs, key=lambda r: r["start"]), sorted(runs, key=lambda r: r["start"])[1:])]
    return {"end_to_next_start_median_s": _q(gaps, 0.5), "end_to_next_start_p90_s": _q(gaps, 0.9),
            "same_process_gap_median_s": _q(same, 0.5), "trial_processes": len(by_pid)}


def _q(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def mlflow_runs(study_dir: Path) -> dict:
    """Child runs under the parent, by trial key: a trial run twice would show twice."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{study_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("cloce-quick")
    runs = client.search_runs([experiment.experiment_id], max_results=50000)
    keys = [r.data.tags.get("cloce.trial_key") or r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags]
    return {"child_runs": len(keys), "distinct_keys": len(set(keys)),
            "finished": sum(r.info.status == "FINISHED" for r in runs if "mlflow.parentRunId" in r.data.tags)}


def summary(args, trials, driver: dict | None) -> dict:
    out = {"slots": args.slots, "epoch_s": args.epoch_s, "epochs": args.epochs} | slot_use(trials, args.slots)
    out |= slot_gaps(trials, args.slots)
    if trials:
        # A trial that is its process's first pays that process's `import mlflow` and store set-up.
        firsts = {min((t for t in trials if t["pid"] == pid), key=lambda t: t["start"])["trial_key"]
                  for pid in {t["pid"] for t in trials}}
        out["mlflow_tracking_s_first_in_process_median"] = _q([t["tracking_s"] for t in trials
                                                              if t["trial_key"] in firsts], 0.5)
        out["mlflow_tracking_s_reused_process_median"] = _q([t["tracking_s"] for t in trials
                                                            if t["trial_key"] not in firsts], 0.5)
        out["mlflow_tracking_s_per_trial_median"] = _q([t["tracking_s"] for t in trials], 0.5)
        out["mlflow_tracking_s_per_trial_p90"] = _q([t["tracking_s"] for t in trials], 0.9)
    if driver:
        out["driver_wall_s"] = round(driver["ended"] - driver["started"], 1)
        out["driver_cpu_s"] = round(driver["cpu_s"], 1)
        out["driver_cpu_ms_per_trial"] = round(1000 * driver["cpu_s"] / max(1, len(trials)), 1)
        out["driver_cpu_ms_per_trial_without_reporting"] = round(
            1000 * (driver["cpu_s"] - driver.get("reporting_cpu_s", 0)) / max(1, len(trials)), 1)
        out["driver_peak_rss_mib"] = round(driver["peak_rss_mib"])
        # None (JSON null) when the study ended before its reporting ran
        out["reporting_s"] = round(driver["reporting_s"], 1) if "reporting_s" in driver else None
        out["driver_exit"] = driver["exit"]
    return out


def write(path: Path, figures: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--trials", type=int, default=1000, help="about this many trials (21 cells)")
    parser.add_argument("--epoch-s", default="20-60", help="each epoch sleeps uniform(LOW, HIGH) s")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resume-check", action="store_true",
                        help="kill the driver when half the trials have ended, then --resume it")
    parser.add_argument("--hand-over-s", type=float,
                        help="study.driver.pool.HAND_OVER_S for this run (0: no hand-over, the design before it)")
    parser.add_argument("--idle-wait-s", type=float,
                        help="study.ray_workarounds.CONTROLLER_IDLE_WAIT_S for this run (0.1: Tune's own idle loop)")
    parser.add_argument("--work-dir", default="/tmp/bench_scale")
    parser.add_argument("--results", help="default: benchmarks/results/scale-<slots>-<trials>[-resume].json")
    args = parser.parse_args(argv)
    cells = len(VARIANTS) * len(KS)
    # Per cell: the search (seed 1) and seeds 2-5 (seed 1's final is the chosen search run).
    num_samples = max(1, round(args.trials / cells) - (len(SEEDS) - 1))
    expected = cells * (num_samples + len(SEEDS) - 1)
    tag = (f"scale-{args.slots}-{args.trials}{'-resume' if args.resume_check else ''}"
           f"{'' if args.hand_over_s is None else f'-hand-over-{args.hand_over_s:g}'}"
           f"{'' if args.idle_wait_s is None else f'-idle-wait-{args.idle_wait_s:g}'}")
    results = Path(args.results or REPO / "benchmarks" / "results" / f"{tag}.json")
    work = Path(args.work_dir) / f"{tag}-{time.strftime('%H%M%S')}"
    work.mkdir(parents=True)
    study_dir, timings, driver_out = work / "study", work / "timings.jsonl", work / "driver.json"
    figures = {"command": "python -m benchmarks.bench_scale " + " ".join(argv or sys.argv[1:]),
               "commit": commit(),
               "cells": cells, "num_samples": num_samples, "expected_trials": expected, "work_dir": str(work)}
    print(f"{expected} trials ({cells} cells x {num_samples} search + {len(SEEDS) - 1} seeds) on {args.slots} slots; "
          f"work dir {work}", flush=True)
    process = launch(args, study_dir, num_samples, timings, driver_out, resume=False)
    killed_at = None
    while process.poll() is None:
        time.sleep(5)
        trials = read_lines(timings)
        figures["progress"] = summary(args, trials, None)
        write(results, figures)
        if args.resume_check and killed_at is None and len(trials) >= expected // 2:
            os.killpg(process.pid, signal.SIGKILL)  # the driver and its Ray runtime, as a lost head node
            process.wait()
            killed_at = len(trials)
    if killed_at is not None:
        figures["killed_after_trials"] = killed_at
        before = {t["trial_key"] for t in read_lines(timings)}
        resumed_at = time.time()
        process = launch(args, study_dir, num_samples, timings, driver_out, resume=True)
        process.wait()
        trials = read_lines(timings)
        after = [t for t in trials if t["start"] >= resumed_at]
        figures["resume"] = {
            "resumed_wall_s": round(time.time() - resumed_at, 1),
            "first_trial_start_after_resume_s": round(min(t["start"] for t in after) - resumed_at, 1) if after else None,
            "trials_after_resume": len(after),
            "finished_trials_run_again": len({t["trial_key"] for t in after} & before),
        }
    trials = read_lines(timings)
    driver = json.loads(driver_out.read_text()) if driver_out.exists() else None
    figures.pop("progress", None)
    figures |= summary(args, trials if killed_at is None else [t for t in trials if t["start"] >= resumed_at]
                       or trials, driver)
    figures["trials_ended"] = len(trials)
    # Lost: expected but never ended; twice: ended more than once (a resumed study must have neither).
    keys = [t["trial_key"] for t in trials]
    figures["distinct_trials_ended"] = len(set(keys))
    figures["trials_ended_twice"] = len(keys) - len(set(keys))
    try:
        figures |= mlflow_runs(study_dir)
    except Exception as err:  # noqa: BLE001 (the figures above still stand)
        figures["mlflow_runs_error"] = str(err)[:300]
    write(results, figures)
    print(json.dumps(figures, indent=1))
    return 0 if process.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
