"""Full-data SemEval on a GPU: finetune, prompt_ki and cloce_d with `semeval_full`'s training
settings, each followed by `predict` on the same device checked against the run's own test score.

    python -m experiments.gpu_fulldata MODEL DATA_DIR OUT_JSONL [--epochs N] [--variants ...]
        [--budget-s S]

One JSON line per run (test micro-/macro-F1 at the best val epoch, wall time, samples/s of
training, peak GPU memory, the predict check). Runs after `--budget-s` seconds are skipped,
so a lent machine's time limit cuts the list short instead of losing the lines already written.
It is what produced experiments/results/gpu_fulldata.jsonl on the lent H100/H200 (see
experiments/results/gpu_fulldata.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tomllib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from cloce.config import DataConfig, TrainConfig  # noqa: E402
from cloce.data.dataset import load_dataset  # noqa: E402
from cloce.metrics import evaluate  # noqa: E402
from cloce.predict import predict_file  # noqa: E402
from cloce.run import run_training  # noqa: E402

FULL_CONFIG = Path(__file__).with_name("semeval_full.toml")
RUNTIME_KEYS = {"num_threads"}  # semeval_full's CPU thread count does not apply to a GPU run


def full_data_config(variant: str, model: str, epochs: int | None, device: str) -> TrainConfig:
    train = tomllib.loads(FULL_CONFIG.read_text())["train"]
    values = {key: value for key, value in train.items() if key not in RUNTIME_KEYS}
    if epochs is not None:
        values["epochs"] = epochs
    return TrainConfig(variant=variant, model=model, k=None, seed=1, device=device, **values)


def predict_check(output_dir: Path, test_file: Path, device: str, label_map) -> dict:
    """`predict` over the test file from the saved checkpoint: its micro-F1 should equal the
    training run's own test evaluation of the best epoch."""
    started = time.perf_counter()
    rows = predict_file(output_dir / "checkpoint", test_file, None, device=device)
    seconds = time.perf_counter() - started
    gold = [label_map.id_of(row["relation"]) for row in rows]
    pred = [label_map.id_of(row["predicted"]) for row in rows]
    return {"predict_micro_f1": evaluate(gold, pred, label_map).micro_f1, "predict_seconds": round(seconds, 2),
            "predict_samples_per_s": round(len(rows) / seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("data_dir")
    parser.add_argument("out_jsonl")
    parser.add_argument("--epochs", type=int, help="override semeval_full's epochs")
    parser.add_argument("--variants", nargs="+", default=["finetune", "prompt_ki", "cloce_d"])
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no run after this many seconds")
    parser.add_argument("--work-dir", default="/tmp/gpu_fulldata")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train_size = len(load_dataset(args.data_dir).train)
    started = time.perf_counter()
    for variant in args.variants:
        if time.perf_counter() - started > args.budget_s:
            print(f"budget spent: {variant} skipped", flush=True)
            continue
        config = full_data_config(variant, args.model, args.epochs, device)
        output_dir = Path(args.work_dir) / f"{variant}_e{config.epochs}"
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        run_started = time.perf_counter()
        result = run_training(config, DataConfig(args.data_dir), output_dir)
        seconds = time.perf_counter() - run_started
        line = {
            "variant": variant, "k": "full", "seed": 1, "epochs": config.epochs, "best_epoch": result.best_epoch,
            "val_micro_f1": result.best_val.micro_f1, "test_micro_f1": result.test.micro_f1,
            "test_macro_f1_semeval": result.test.macro_f1_semeval,
            "val_curve": [round(r.val_micro_f1, 4) for r in result.history],
            "seconds": round(seconds, 1), "train_samples_per_s": round(train_size * config.epochs / seconds, 1),
            "peak_gpu_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
            "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
            "torch": torch.__version__, "bf16": config.bf16, "model": Path(args.model).name,
        }
        line |= predict_check(output_dir, Path(args.data_dir) / "test.txt", device, result.pipeline.label_map)
        with open(args.out_jsonl, "a") as sink:
            sink.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
