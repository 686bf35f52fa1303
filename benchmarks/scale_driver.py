"""The study command with the scale benchmark's stand-in trial plugged in:
`python -m benchmarks.scale_driver STUDY-ARGS` is `python -m study STUDY-ARGS` whose trials run
benchmarks/scale_standin.py instead of training (TrialContext.trial_function).

It writes, to $BENCH_SCALE_DRIVER_OUT, this process's own figures: CPU seconds (user + system,
all its threads: the Tuner threads, Tune's controllers, Ray's core worker), peak RSS, and the
seconds and CPU of the end-of-study reporting (tables, comparisons, plots, the parent run's
files and metrics: study.driver.study_run.attach_results, timed from outside).

$BENCH_SCALE_HAND_OVER_S, where set, replaces study.driver.pool.HAND_OVER_S (0: an ended
trial's slot goes to whichever cell asks first and its process is let go, the design before
issue 26's hand-over): the benchmark's A/B of the two. $BENCH_SCALE_IDLE_WAIT_S likewise
replaces study.ray_workarounds.CONTROLLER_IDLE_WAIT_S (0.1: Tune's own controller loop)."""
from __future__ import annotations

import json
import os
import resource
import sys
import time


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    from benchmarks.scale_standin import standin_trial
    from study.cli import main as study_main
    from study import ray_workarounds
    from study.driver import pool, study_run

    if os.environ.get("BENCH_SCALE_HAND_OVER_S"):
        pool.HAND_OVER_S = float(os.environ["BENCH_SCALE_HAND_OVER_S"])
    if os.environ.get("BENCH_SCALE_IDLE_WAIT_S"):
        ray_workarounds.CONTROLLER_IDLE_WAIT_S = float(os.environ["BENCH_SCALE_IDLE_WAIT_S"])
    figures: dict = {"started": time.time()}
    attach = study_run.attach_results

    def timed_attach(*args, **kwargs):
        began, cpu = time.perf_counter(), cpu_s()
        try:
            return attach(*args, **kwargs)
        finally:
            figures["reporting_s"] = time.perf_counter() - began
            figures["reporting_cpu_s"] = cpu_s() - cpu

    study_run.attach_results = timed_attach  # the benchmark's timer; the study's own function inside
    code = study_main(argv, trial_function=standin_trial)
    figures |= {"ended": time.time(), "cpu_s": cpu_s(),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "exit": code}
    out = os.environ.get("BENCH_SCALE_DRIVER_OUT")
    if out:
        with open(out, "w") as handle:
            json.dump(figures, handle)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
