"""The device check of issue 15, one command on one GPU in under 8 minutes
(`bash benchmarks/gpu_check.sh`; `--dry-run`: the same steps on the CPU, tiny inputs):

1. the CE pass of prompt_ki vs the Hugging Face `Trainer`, the same model on the same batches
   (samples/s; bf16 autocast for both on a GPU);
2. `cloce predict` vs a bare `inference_mode` forward over the same test sentences;
3. one trial's peak GPU memory (its whole process: CUDA context included) and how many
   MiniLM trials fit on the GPU from it;
4. a small study with its trials packed on the GPU (`resources.gpus_per_worker` = 1/N, local
   mode) against one trial per GPU: trials, wall time, GPU utilisation sampled with nvidia-smi.

Writes one table, `gpu_check.md` (+ `gpu_check.json`), to $OUT if set, else the working directory.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from benchmarks.bench_compile import epoch_eager_vs_compiled  # noqa: E402
from benchmarks.common import alternate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BATCH = 16


def setup(args):
    from cloce.data.dataset import load_dataset
    from cloce.data.sampling import sample_k_shot
    from cloce.encoding import Collator, EncodedSplit
    from cloce.pipeline import build_pipeline, type_vocabulary
    from cloce.variants import get_variant

    torch.manual_seed(1)
    dataset = load_dataset(args.data_dir)
    sample = sample_k_shot(dataset.train, dataset.label_map, args.k, 1)
    types = type_vocabulary([*dataset.train, *dataset.val, *dataset.test])
    pipeline = build_pipeline(get_variant("prompt_ki"), dataset.label_map, types, args.model, 128)
    split = EncodedSplit(pipeline.encode(pipeline.tokenize(sample.instances)))
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(1)).tolist()
    batches = [order[i : i + BATCH] for i in range(0, len(order), BATCH)]
    return dataset, pipeline, split, batches, Collator(pipeline.tokenizer.pad_token_id)


def ce_pass_vs_trainer(args, device: torch.device) -> dict:
    """The same prompt_ki model, initial weights, batches and optimiser (fused AdamW) each."""
    from torch.utils.data import DataLoader
    from transformers import Trainer, TrainingArguments

    from cloce.config import TrainConfig
    from cloce.runtime import Runtime
    from cloce.optim import linear_warmup_decay, model_adamw
    from cloce.train import classification_pass

    _, pipeline, split, batches, collate = setup(args)
    model = pipeline.model.to(device)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    bf16 = device.type == "cuda"
    config = TrainConfig(variant="prompt_ki", k=args.k, lr=1e-4, batch_size=BATCH, bf16=bf16)
    samples = args.epochs * len(split)

    def cloce_pass() -> float:
        model.load_state_dict(initial)
        loader = DataLoader(split, batch_sampler=batches, collate_fn=collate)
        optimizer = model_adamw(model, config.lr, config.weight_decay)
        scheduler = linear_warmup_decay(optimizer, args.epochs * len(batches), config.warmup_ratio)
        sync(device)
        began = time.perf_counter()
        for _ in range(args.epochs):
            classification_pass(model, loader, optimizer, scheduler, config, Runtime(device=device))
        sync(device)
        return samples / (time.perf_counter() - began)

    class WithLoss(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **batch):
            logits = self.inner(batch)
            return {"loss": F.cross_entropy(logits.float(), batch["labels"]), "logits": logits}

    def hf_trainer() -> float:
        model.load_state_dict(initial)
        rows = [collate([split[i] for i in batch]) for batch in batches]
        with tempfile.TemporaryDirectory() as out:
            targs = TrainingArguments(
                output_dir=out, per_device_train_batch_size=1, num_train_epochs=args.epochs, learning_rate=1e-4,
                weight_decay=0.01, save_strategy="no", eval_strategy="no", report_to=[], logging_strategy="no",
                use_cpu=device.type == "cpu", seed=1, dataloader_num_workers=0, disable_tqdm=True, bf16=bf16,
                remove_unused_columns=False, optim="adamw_torch_fused",
            )
            trainer = Trainer(model=WithLoss(model), args=targs, train_dataset=rows, data_collator=lambda items: items[0])
            sync(device)
            began = time.perf_counter()
            trainer.train()
            sync(device)
        return samples / (time.perf_counter() - began)

    speeds = alternate({"cloce": cloce_pass, "hf_trainer": hf_trainer}, args.rounds)
    cloce, hf = speeds["cloce"], speeds["hf_trainer"]
    return {"samples": samples, "bf16": bf16, "cloce_samples_per_s": cloce, "hf_trainer_samples_per_s": hf,
            "ratio": cloce / hf}


def predict_vs_forward(args, device: torch.device) -> dict:
    from cloce.checkpoint import load_checkpoint, save_checkpoint
    from cloce.encoding import EncodedSplit
    from cloce.predict import predict_file

    dataset, pipeline, _, _, collate = setup(args)
    test, test_file = dataset.test, dataset.files["test"]  # the whole test file, as predict reads it
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = save_checkpoint(pipeline, Path(directory) / "checkpoint")
        loaded = load_checkpoint(checkpoint).model.to(device).eval()
        split = EncodedSplit(pipeline.encode(pipeline.tokenize(test)))

        @torch.inference_mode()
        def bare() -> float:
            sync(device)
            began = time.perf_counter()
            for start in range(0, len(split), 64):
                batch = collate([split[i] for i in range(start, min(start + 64, len(split)))])
                loaded({k: v.to(device) for k, v in batch.items()}).cpu()
            sync(device)
            return len(split) / (time.perf_counter() - began)

        def cli() -> float:
            began = time.perf_counter()
            predict_file(checkpoint, test_file, None, batch_size=64, device=str(device))
            return len(split) / (time.perf_counter() - began)

        runs = alternate({"predict": cli, "bare": bare}, args.rounds)
    predict, forward = runs["predict"], runs["bare"]
    return {"sentences": len(split), "predict_samples_per_s": predict, "bare_samples_per_s": forward,
            "ratio": predict / forward}


def trial_memory(args, device: torch.device) -> dict:
    """One cloce_d trial (the variant with the most activations: pairs) on its own process's
    GPU memory: what torch reserved at its peak, plus the CUDA context (the process's use of
    the device before torch allocated anything)."""
    if device.type != "cuda":
        return {"peak_reserved_mib": None, "trials_that_fit": None, "note": "no GPU (dry run)"}
    code = (
        "import torch, json, sys; from cloce.config import TrainConfig; from cloce.train import train; "
        "from cloce.data.dataset import load_dataset; torch.zeros(1, device='cuda'); "
        "free0, total = torch.cuda.mem_get_info(); "
        f"c = TrainConfig(variant='cloce_d', k={args.k}, epochs=1, batch_size=8, kshot_val=True, test_sample=64, "
        f"device='cuda', bf16=True, model={args.model!r}); train(c, load_dataset({args.data_dir!r})); "
        "free1, _ = torch.cuda.mem_get_info(); "
        "print(json.dumps({'reserved': torch.cuda.max_memory_reserved(), 'total': total, "
        "'context': total - free0, 'process_end': total - free1}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=240)
    if done.returncode != 0:
        return {"error": done.stderr[-500:]}
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    footprint = measured["context"] + measured["reserved"]
    return {"peak_reserved_mib": measured["reserved"] / 2**20, "context_mib": measured["context"] / 2**20,
            "per_trial_mib": footprint / 2**20, "gpu_mib": measured["total"] / 2**20,
            "trials_that_fit": int(0.9 * measured["total"] // footprint)}


class GpuSampler:
    """nvidia-smi every 0.5 s: utilisation (%) and memory used (MiB) while a study runs."""

    def __init__(self, enabled: bool):
        self.enabled, self.samples, self.process = enabled, [], None

    def __enter__(self):
        if self.enabled:
            self.process = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-lms", "500"],
                stdout=subprocess.PIPE, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self):
        for line in self.process.stdout:
            try:
                util, memory = (float(x) for x in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((util, memory))

    def __exit__(self, *exc):
        if self.process:
            self.process.terminate()
            self.process.wait(timeout=10)

    def summary(self) -> dict:
        if not self.samples:
            return {"gpu_util_mean_pct": None, "gpu_util_max_pct": None, "gpu_mem_max_mib": None}
        utils = [u for u, _ in self.samples]
        return {"gpu_util_mean_pct": statistics.mean(utils), "gpu_util_max_pct": max(utils),
                "gpu_mem_max_mib": max(m for _, m in self.samples), "gpu_samples": len(self.samples)}


def study(args, device: torch.device, per_gpu: int, work: Path) -> dict:
    """The study's trials, `per_gpu` of them at a time on the GPU (local mode)."""
    use_gpu = device.type == "cuda"
    command = [
        sys.executable, str(REPO / "study" / "run_fewshot_grid.py"), "--variants", *args.study_variants,
        "--ks", str(args.k), "--seeds", *map(str, args.seeds), "--num-samples", str(args.search_trials),
        "--epochs", str(args.study_epochs), "--study-dir", str(work / f"study-{per_gpu}"),
        "--tracking-uri", f"sqlite:///{work}/mlflow-{per_gpu}.db", "--num-cpus", str(args.num_cpus),
        "--set", "resources.workers_per_trial=0", "--set", "resources.cpus_per_worker=1",
        "--set", f"resources.use_gpu={'true' if use_gpu else 'false'}",
        "--set", f"resources.gpus_per_worker={1.0 / per_gpu:.6f}",
        "--set", f"resources.max_running_trials={per_gpu}",
        "--set", "train.num_threads=1", "--set", f"train.test_sample={args.test_sentences}",
    ] + (["--model", args.model] if args.model else []) + (["--data-dir", args.data_dir] if args.data_dir else [])
    with GpuSampler(use_gpu) as gpu:
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=work, timeout=args.study_timeout_s)
        wall = time.perf_counter() - began
    trials = sum(1 for line in done.stdout.splitlines() if "] done " in line)
    out = {"trials_per_gpu": per_gpu, "trials_done": trials, "wall_s": wall, "exit": done.returncode} | gpu.summary()
    if done.returncode != 0:
        out["error"] = (done.stdout + done.stderr)[-800:]
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def table(results: dict, device: str) -> str:
    def fmt(value):
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = [f"# GPU check ({device})", "", "| check | result |", "|---|---|"]
    for name, result in results.items():
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in result.items() if k != "error")
        lines.append(f"| {name} | {shown}{' · error: ' + result['error'][-200:] if 'error' in result else ''} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny inputs: checks the script, not the GPU")
    parser.add_argument("--model", help="backbone (default: the bundled MiniLM)")
    parser.add_argument("--data-dir", help="SemEval-style data (default: ../shared/datasets/semeval)")
    parser.add_argument("--out", default=os.environ.get("OUT") or ".", help="where the table goes ($OUT)")
    args = parser.parse_args(argv)
    dry = args.dry_run
    device = torch.device("cpu" if dry or not torch.cuda.is_available() else "cuda")
    args.k, args.epochs, args.rounds = (2, 1, 1) if dry else (16, 3, 3)
    args.test_sentences = 16 if dry else 1000
    args.study_variants = ["prompt_ki"] if dry else ["prompt_ki", "cloce_d"]
    args.seeds, args.search_trials, args.study_epochs = ((1,), 1, 1) if dry else ((1, 2, 3), 2, 5)
    args.num_cpus = 2 if dry else max(2, os.cpu_count() or 2)
    args.study_timeout_s = 600 if dry else 150
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    started = time.perf_counter()
    steps = [
        ("1. CE pass prompt_ki vs HF Trainer (same batches), samples/s", lambda: ce_pass_vs_trainer(args, device)),
        ("2. predict vs bare forward, samples/s", lambda: predict_vs_forward(args, device)),
        ("3. one trial's GPU memory (cloce_d, K=16)", lambda: trial_memory(args, device)),
        # Benchmarks 1 and 3's epoch rows on the device: eager vs train.compile, the compile not counted.
        *((f"5. CE epoch eager vs compiled ({variant}), samples/s", lambda variant=variant: epoch_eager_vs_compiled(
            variant, sentences=32 if dry else 3000, device=device, data_dir=args.data_dir, model_name=args.model,
            same_dropout=dry))
          for variant in ("prompt_ki", "finetune")),
    ]
    for name, step in steps:
        results[name] = guarded(step)
        print(name, results[name], flush=True)
    fit = results["3. one trial's GPU memory (cloce_d, K=16)"].get("trials_that_fit") or 2
    packed = max(2, min(fit, args.num_cpus, 8))
    with tempfile.TemporaryDirectory() as work:
        for per_gpu in (packed,) if dry else (packed, 1):
            name = f"4. study, {per_gpu} trial(s) at a time on the {'GPU' if device.type == 'cuda' else 'CPU (dry run)'}"
            results[name] = guarded(lambda: study(args, device, per_gpu, Path(work)))
            print(name, results[name], flush=True)
    results["total"] = {"seconds": time.perf_counter() - started, "dry_run": dry}
    text = table(results, torch.cuda.get_device_name() if device.type == "cuda" else "cpu, dry run")
    (out / "gpu_check.md").write_text(text)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1, default=str))
    print(text)
    return 0


def guarded(step) -> dict:
    try:
        return step()
    except Exception as err:  # one failed check must not lose the others' numbers
        return {"error": f"{type(err).__name__}: {err}"}


if __name__ == "__main__":
    sys.exit(main())
