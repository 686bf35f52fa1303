"""All benchmarks, side by side on this machine, into benchmarks/results/RESULTS.md (+ results.json).

    python -m benchmarks.run            # ~25 minutes on 2 cores; run it on a quiet machine
    python -m benchmarks.run --only ce_pass predict

Every figure is a ratio of two contenders measured in the same run, interleaved (absolute
times are context only: this machine is noisy). A benchmark that fails is reported as
such; the others still run.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"  # what a run writes: RESULTS.md (the table) and results.json (the figures)


def benchmarks() -> dict:
    from benchmarks import bench_compile, bench_memory, bench_pool, bench_predict, bench_ray, bench_train

    return {
        "ce_pass": ("1. CE pass (prompt_ki, K=16, batch 16) vs a bare PyTorch loop", bench_train.ce_pass_vs_bare_loop),
        "compile_trial_prompt_ki": ("1c. a prompt_ki K=16 trial (quick's), eager vs `train.compile`, compile time counted: "
                                    "eager s / compiled s", functools.partial(bench_compile.trial_eager_vs_compiled, "prompt_ki")),
        "compile_epoch_prompt_ki": ("1d. a prompt_ki full-data CE epoch, compiled vs eager samples/s (compile time not counted)",
                                    functools.partial(bench_compile.epoch_eager_vs_compiled, "prompt_ki")),
        "contrastive": ("2. cloce_d contrastive step vs its CE pass, K=16, seconds per encoded sentence", bench_train.contrastive_overhead),
        "hf_trainer": ("3. cloce finetune vs Hugging Face Trainer, samples/s", bench_train.finetune_vs_hf_trainer),
        "hf_trainer_bf16": ("3b. the same, both with bf16 autocast", functools.partial(bench_train.finetune_vs_hf_trainer, bf16=True)),
        "compile_trial_finetune": ("3c. a finetune K=16 trial, eager vs `train.compile`, compile time counted: "
                                   "eager s / compiled s", functools.partial(bench_compile.trial_eager_vs_compiled, "finetune")),
        "compile_epoch_finetune": ("3d. a finetune full-data CE epoch, compiled vs eager samples/s (compile time not counted)",
                                   functools.partial(bench_compile.epoch_eager_vs_compiled, "finetune")),
        "predict": ("4. `cloce predict` vs bare inference_mode forward, samples/s", bench_predict.predict_vs_bare_forward),
        "ray_study": ("5. small study on Ray Tune + TorchTrainer (1 worker per trial) vs in-process, wall time",
                      bench_ray.study_on_ray_vs_in_process),
        "ray_study_local": ("5c. the same study in Ray Train's local mode (0 workers, the one-machine default)",
                            functools.partial(bench_ray.study_on_ray_vs_in_process, workers=0)),
        "ray_study_local_every_epoch": ("5d. 5c with a checkpoint every epoch (the cut of issue 15 undone)",
                                        functools.partial(bench_ray.study_on_ray_vs_in_process, workers=0,
                                                          overrides={"resources.checkpoint_every_s": 0})),
        "ray_trivial": ("5b. one trivial TorchTrainer trial: stock vs lean trainer vs local mode", bench_ray.trivial_trial_cost),
        "memory": ("6. peak RSS of one training run (cloce_d, K=16)", bench_memory.training_run_peak_rss),
        "pool": ("7. a study's trial slots busy (utilisation), every cell at once; before: one cell after another",
                 bench_pool.study_pool_utilisation),
    }


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    import torch

    return f"{os.cpu_count()} x {cpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}"


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=HERE).stdout.strip()
        return head + ("+uncommitted changes" if dirty else "")
    except OSError:
        return "unknown"


def verdict(name: str, result: dict) -> str:
    if "error" in result:
        return "failed to run"
    target = result.get("target")
    if not target:
        return "measured"
    op, value = target.split()
    met = result["ratio"] >= float(value) if op == ">=" else result["ratio"] <= float(value)
    return "met" if met else "missed"


def write_report(results: dict, started: str, seconds: float, command: str) -> None:
    lines = [
        "# Benchmarks", "",
        f"Command: `{command}` · commit `{commit()}` · {started} · {seconds / 60:.0f} min · {machine()}", "",
        "| benchmark | ratio | target | verdict | commit, date | measured |", "|---|---|---|---|---|---|",
    ]
    for key, (title, _) in benchmarks().items():
        if key not in results:
            continue
        r = results[key]
        hidden = ("ratio", "target", "error", "commit", "date")
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k not in hidden}
        when = f"`{r['commit']}` {r['date']}" if "commit" in r else "before per-row commits"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        lines.append(f"| {title} | {ratio} | {r.get('target', '')} | {verdict(key, r)} | {when} | {r.get('error') or shown} |")
    notes = HERE / "readings.md"  # hand-written readings of the figures, kept across re-runs
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    (RESULTS / "RESULTS.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(benchmarks()), help="run these benchmarks only")
    args = parser.parse_args(argv)
    results_file = RESULTS / "results.json"
    results = json.loads(results_file.read_text()) if args.only and results_file.exists() else {}
    started, begin = time.strftime("%Y-%m-%d %H:%M"), time.perf_counter()
    for key, (title, run) in benchmarks().items():
        if args.only and key not in args.only:
            continue
        print(f"running {title} ...", flush=True)
        try:
            results[key] = run() | {"commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M")}
        except Exception as err:  # one broken benchmark must not lose the others
            results[key] = {"error": f"{type(err).__name__}: {err}", "commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M")}
            traceback.print_exc()
        print(f"  {results[key]}", flush=True)
        results_file.write_text(json.dumps(results, indent=1))
        write_report(results, started, time.perf_counter() - begin, " ".join(["python -m benchmarks.run", *(argv or sys.argv[1:])]))
    print((RESULTS / "RESULTS.md").read_text())
    print("Ray vs in-process (5) and a study's peak RSS need a quiet machine for ~10 minutes: --only ray_study ray_study_local ray_trivial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
