"""Eager vs `train.compile` (torch.compile of the encoder), for benchmarks 1 (prompt_ki)
and 3 (finetune): a K=16 trial with the compile time counted, each contender in a fresh
process with a fresh inductor cache (a warm cache would hide the compile), and a full-data
CE epoch without it (the compiled encoder warmed up on three batches first)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
# The quick study's trial (experiments/quick.toml): 2 epochs, K-shot val, 300 test sentences.
TRIAL = dict(k=16, seed=1, epochs=2, kshot_val=True, test_sample=300, batch_size=16)
BLOCK_BATCHES = 25  # an epoch's blocks, eager and compiled alternately
TRIAL_SCRIPT = """
import json, sys, time
from cloce.config import TrainConfig
from cloce.data.dataset import load_dataset
from cloce.train import train
started = time.perf_counter()
config = TrainConfig(**json.loads(sys.argv[1]))
train(config, load_dataset(None))
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def trial_eager_vs_compiled(variant: str) -> dict:
    seconds = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        with tempfile.TemporaryDirectory() as cache:
            env = os.environ | {"TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
            config = json.dumps(TRIAL | {"variant": variant, "compile": compiled, "lr": 3e-4 if variant == "finetune" else 1e-4})
            done = subprocess.run([sys.executable, "-c", TRIAL_SCRIPT, config], capture_output=True, text=True,
                                  env=env, cwd=ROOT, check=True)
            seconds[name] = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return {"variant": variant, **{f"{k}_trial_s": v for k, v in seconds.items()} | TRIAL,
            "ratio": seconds["eager"] / seconds["compiled"], "faster": min(seconds, key=seconds.get)}


def epoch_eager_vs_compiled(variant: str, warmup_batches: int = 3, sentences: int | None = None,
                            device: torch.device | None = None, data_dir: str | None = None,
                            model_name: str | None = None, same_dropout: bool = False) -> dict:
    """One CE epoch over all of SemEval's training sentences (batch 16; the first `sentences`
    only, if given), samples/s, on `device` (default: the CPU; benchmarks/gpu_check.py: the GPU).
    Both contenders start from the same weights and draw from the same seed before each block;
    `same_dropout` (the dry run's check of the numbers) makes the compiled encoder draw its
    dropout masks as eager does (inductor's `fallback_random`, slower: not for timings), so their
    losses agree to float rounding."""
    from benchmarks.common import BATCH
    from cloce.config import TrainConfig
    from cloce.data.dataset import load_dataset
    from cloce.encoding import Collator, EncodedSplit
    from cloce.pipeline import build_pipeline, type_vocabulary
    from cloce.runtime import Runtime, compile_encoder
    from cloce.optim import linear_warmup_decay, model_adamw
    from cloce.variants import get_variant

    device = device or torch.device("cpu")
    if same_dropout:
        import torch._inductor.config

        torch._inductor.config.fallback_random = True
    dataset = load_dataset(data_dir)
    types = type_vocabulary([*dataset.train, *dataset.val, *dataset.test])
    config = TrainConfig(variant=variant, k=None, lr=1e-4)
    contenders = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        torch.manual_seed(1)
        pipeline = build_pipeline(get_variant(variant), dataset.label_map, types, model_name, 256)
        split = EncodedSplit(pipeline.encode(pipeline.tokenize(dataset.train[:sentences])))
        loader = torch.utils.data.DataLoader(split, batch_size=BATCH, shuffle=True,
                                             collate_fn=Collator(pipeline.tokenizer.pad_token_id),
                                             generator=torch.Generator().manual_seed(1))
        batches = [{k: v.to(device) for k, v in batch.items()} for batch in loader]
        model = pipeline.model.to(device)
        optimizer = model_adamw(model, config.lr, config.weight_decay)
        scheduler = linear_warmup_decay(optimizer, len(batches) + warmup_batches, config.warmup_ratio)
        if compiled:
            compile_encoder(model)
        warm_up(model, batches[:warmup_batches])  # both alike: the compiled one compiles here
        contenders[name] = (model, batches, optimizer, scheduler)
    # The epoch in blocks of batches, the two contenders alternately (who goes first alternates
    # too), so a change of load on this shared machine falls on both alike.
    seconds, loss_sums = dict.fromkeys(contenders, 0.0), dict.fromkeys(contenders, 0.0)
    blocks = range(0, len(batches), BLOCK_BATCHES)
    for index, start in enumerate(blocks):
        for name in (list(contenders) if index % 2 == 0 else list(reversed(contenders))):
            model, batches, optimizer, scheduler = contenders[name]
            block = batches[start:start + BLOCK_BATCHES]
            torch.manual_seed(index)  # the same dropout draws for both (with same_dropout: the same masks)
            took, loss = timed_pass(model, block, optimizer, scheduler, config, Runtime(device=device), device)
            seconds[name] += took
            loss_sums[name] += loss * sum(len(batch["labels"]) for batch in block)
    speeds = {name: len(split) / value for name, value in seconds.items()}
    # Same weights, same batches, same seeds: the epoch losses tell whether the compiled encoder
    # learns as the eager one does (equal to rounding with same_dropout; else close, the masks differ).
    losses = {name: value / len(split) for name, value in loss_sums.items()}
    return {"variant": variant, "sentences": len(split), "blocks": len(blocks),
            "eager_samples_per_s": speeds["eager"], "compiled_samples_per_s": speeds["compiled"],
            "ratio": speeds["compiled"] / speeds["eager"],
            "eager_train_loss": losses["eager"], "compiled_train_loss": losses["compiled"]}


def timed_pass(model, batches, optimizer, scheduler, config, runtime, device) -> tuple[float, float]:
    """Seconds of one classification pass over `batches`, and its mean loss."""
    from cloce.train import classification_pass

    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    loss, _ = classification_pass(model, batches, optimizer, scheduler, config, runtime)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, loss


def warm_up(model: torch.nn.Module, batches: list[dict]) -> None:
    model.train()
    for batch in batches:
        torch.nn.functional.cross_entropy(model(batch), batch["labels"]).backward()
    model.zero_grad(set_to_none=True)


if __name__ == "__main__":  # python -m benchmarks.bench_compile trial|epoch VARIANT [SENTENCES]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kind, variant = sys.argv[1], sys.argv[2]
    if kind == "trial":
        print(trial_eager_vs_compiled(variant))
    else:
        print(epoch_eager_vs_compiled(variant, sentences=int(sys.argv[3]) if len(sys.argv) > 3 else None))
