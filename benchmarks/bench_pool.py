"""7. How many of a study's trial slots are busy: cells one after another vs every cell at once.

The measurement of issue 14, repeated: a local runtime declaring 16 logical CPUs, a tiny
random BERT on a SemEval slice, 5 variants x K 4/8, 4 search trials + seeds 1-3, 1 epoch:
60 trials of one CPU each. The same study runs twice, `resources.cells_in_parallel` false
(the old way) then true. A slot is busy from the moment Tune starts a trial on it (the
study's progress line `start`) until the trial ends (`done` / `FAILED`): the trial's
process start-up counts as busy. Beside it, `training_*` counts only the span of each
trial's MLflow child run (created once the trial's process is up, ended after its last report).

    python -m benchmarks.run --only pool        # ~10 minutes on 2 cores
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SLOTS = 16


def tiny_study_inputs(directory: Path) -> tuple[Path, Path]:
    """A tiny random BERT with the bundled tokenizer, and SemEval with every train sentence
    (K-shot samples need them) and slices of val and test: the local cluster's own."""
    from tests.support.tiny_inputs import make_semeval_slice, make_tiny_model

    return Path(make_tiny_model(directory / "tiny_bert")), Path(make_semeval_slice(directory / "semeval"))


def run_study(directory: Path, model_dir: Path, data_dir: Path, in_parallel: bool) -> dict:
    name = "parallel" if in_parallel else "sequential"
    db = directory / f"{name}.db"
    command = [
        sys.executable, str(REPO / "study" / "run_fewshot_grid.py"), "--data-dir", str(data_dir),
        "--model", str(model_dir), "--variants", "finetune", "prompt", "prompt_ki", "cloce_s", "cloce_d",
        "--ks", "4", "8", "--seeds", "1", "2", "3", "--num-samples", "4", "--epochs", "1",
        "--num-cpus", str(SLOTS), "--max-concurrent-trials", str(SLOTS), "--study-dir", str(directory / name),
        "--tracking-uri", f"sqlite:///{db}", "--set", "train.num_threads=1", "--set", "search.asha=false",
        "--set", f"resources.cells_in_parallel={'true' if in_parallel else 'false'}",
    ]
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    started = time.perf_counter()
    with CpuSampler() as cpu:
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=directory, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} study failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    spans = mlflow_spans(f"sqlite:///{db}")
    training = {f"training_{k}": v for k, v in occupancy(spans).items()}
    cores_busy = cpu.busy_between(min(s for s, _ in spans), max(e for _, e in spans))
    return {"wall_s": wall, **occupancy(progress_spans(done.stdout)), **training, "cores_busy": cores_busy}


class CpuSampler:
    """The machine's CPU times every half second while the study runs (psutil), so the span of
    its trials can be read as: how busy were the cores? Slots can sit empty while every core
    works (trial processes starting up, importing torch, on a machine with fewer cores than
    slots); then more slot occupancy could not make the study finish sooner. Machine-wide:
    anything else running counts too."""

    def __init__(self, every_s: float = 0.5):
        import threading

        self.every_s, self.samples = every_s, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        while True:
            times = psutil.cpu_times()
            self.samples.append((time.time(), times.idle + getattr(times, "iowait", 0.0), sum(times)))
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> "CpuSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def busy_between(self, start: float, end: float) -> float:
        """Fraction of all cores busy from `start` to `end` (wall-clock seconds), from the samples
        nearest inside that window."""
        inside = [s for s in self.samples if start <= s[0] <= end] or self.samples
        (_, idle0, total0), (_, idle1, total1) = inside[0], inside[-1]
        return 1.0 - (idle1 - idle0) / (total1 - total0) if total1 > total0 else float("nan")


PROGRESS = re.compile(r"^\[\s*([0-9.]+)s\] (start|done|FAILED)\s+(?:\S+/)?([0-9a-f]{8})\b")


def progress_spans(stdout: str) -> list[tuple[float, float]]:
    """(start, end) of every trial from the study's progress lines (study/driver/progress.py); a
    trial Tune restarts after a failure starts again, so spans run from its first start."""
    started, spans = {}, []
    for line in stdout.splitlines():
        match = PROGRESS.match(line)
        if not match:
            continue
        moment, event, trial = float(match[1]), match[2], match[3]
        if event == "start":
            started.setdefault(trial, moment)
        elif trial in started:
            spans.append((started.pop(trial), moment))
    return spans


def mlflow_spans(uri: str) -> list[tuple[float, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cloce-quick")
    runs = [r for r in client.search_runs([experiment.experiment_id], max_results=5000)
            if "mlflow.parentRunId" in r.data.tags]
    return [(r.info.start_time / 1000, r.info.end_time / 1000) for r in runs if r.info.end_time]


def occupancy(spans: list[tuple[float, float]]) -> dict:
    """Peak and mean number of trials running over the span from the first start to the last end."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    area, last = 0.0, events[0][0]
    for moment, change in events:
        area += running * (moment - last)
        running, last = running + change, moment
        peak = max(peak, running)
    span = events[-1][0] - events[0][0]
    return {"trials": len(spans), "peak_running": peak, "mean_running": area / span, "trial_span_s": span,
            "utilisation": area / span / SLOTS, **idle_by_phase(spans)}


def idle_by_phase(spans: list[tuple[float, float]]) -> dict:
    """Where the empty slot-seconds lie: while the slots fill (before the first time all are
    busy), while trials are still being started (up to the last start: the scheduler's loss),
    and the tail (after the last start, the last cells' trials finishing: the study's shape)."""
    first, last_start, end = min(s for s, _ in spans), max(s for s, _ in spans), max(e for _, e in spans)
    moments = sorted({moment for span in spans for moment in span})
    full_at = None
    idle = {"filling": 0.0, "middle": 0.0, "tail": 0.0}
    for a, b in zip(moments, moments[1:]):
        running = sum(1 for s, e in spans if s <= a < e)
        if full_at is None and running >= SLOTS:
            full_at = a
        phase = "tail" if a >= last_start else "filling" if full_at is None else "middle"
        idle[phase] += max(0, SLOTS - running) * (b - a)
    return {"slots_full_after_s": (full_at - first) if full_at is not None else None,
            "tail_s": end - last_start, **{f"idle_slot_s_{name}": seconds for name, seconds in idle.items()}}


def study_pool_utilisation() -> dict:
    with tempfile.TemporaryDirectory(prefix="cloce-bench-pool-") as scratch:
        directory = Path(scratch)
        model_dir, data_dir = tiny_study_inputs(directory)
        before = run_study(directory, model_dir, data_dir, in_parallel=False)
        after = run_study(directory, model_dir, data_dir, in_parallel=True)
    return {
        "ratio": after["utilisation"], "target": ">= 0.75", "slots": SLOTS,
        "before": {k: round(v, 2) for k, v in before.items()}, "after": {k: round(v, 2) for k, v in after.items()},
        "wall_before_over_after": before["wall_s"] / after["wall_s"],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(study_pool_utilisation(), indent=1))
