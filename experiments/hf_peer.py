"""The fine-tuning peer of the results table: the Hugging Face `Trainer` fine-tuning the
same backbone ([CLS] head, `AutoModelForSequenceClassification`) on the same K-shot
sentences, encoded with cloce's entity markers, under the same budget as cloce's trials
(epochs, batch, val subset, whole test set); its learning rate is chosen on val with the
search seed, then run on every seed; test F1 at the best val epoch (`load_best_model_at_end`).

Each finished run is one line of a JSONL results file; what is there is not run again.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cloce.config import TrainConfig
from cloce.data.dataset import Dataset
from cloce.data.sampling import fixed_subset, sample_k_shot
from cloce.metrics import evaluate
from cloce.pipeline import build_pipeline, type_vocabulary
from cloce.variants import get_variant


@dataclass(frozen=True)
class PeerBudget:
    """What cloce's own trials get (experiments/semeval_results.toml), so the peer is fair. It
    runs alone, one run at a time, on 2 threads (a study runs two 1-thread trials at once)."""

    epochs: int
    batch_size: int
    val_sample: int | None
    lrs: tuple[float, ...]  # the peer's lr grid, searched on val with the search seed
    search_seed: int
    seeds: tuple[int, ...]
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    num_threads: int = 2
    bf16: bool = False  # autocast, where the device computes bf16 natively (as cloce's trials)


def peer_run(dataset: Dataset, k: int, seed: int, lr: float, budget: PeerBudget, model: str | None = None) -> dict:
    """One Trainer run: best val micro-F1 over the epochs, and test F1 with those weights."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    from cloce.runtime import bf16_native

    torch.set_num_threads(budget.num_threads)
    types = type_vocabulary([*dataset.train, *dataset.val, *dataset.test])
    pipeline = build_pipeline(get_variant("finetune"), dataset.label_map, types, model, 256)
    train = sample_k_shot(dataset.train, dataset.label_map, k, seed).instances if k else dataset.train
    val = fixed_subset(dataset.val, budget.val_sample)
    rows = {name: rows_of(pipeline, instances) for name, instances in
            (("train", train), ("val", val), ("test", dataset.test))}

    def micro_f1(prediction) -> dict:
        predicted = np.argmax(prediction.predictions, axis=-1).tolist()
        return {"micro_f1": evaluate(prediction.label_ids.tolist(), predicted, dataset.label_map).micro_f1}

    steps = budget.epochs * math.ceil(len(rows["train"]) / budget.batch_size)
    torch.manual_seed(seed)
    network = AutoModelForSequenceClassification.from_pretrained(pipeline.model_name, num_labels=len(dataset.label_map))
    with tempfile.TemporaryDirectory(prefix="hf-peer-") as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=budget.batch_size, per_device_eval_batch_size=64,
            num_train_epochs=budget.epochs, learning_rate=lr, weight_decay=budget.weight_decay,
            warmup_steps=int(budget.warmup_ratio * steps), eval_strategy="epoch", save_strategy="epoch",
            save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="micro_f1",
            report_to=[], logging_strategy="no", use_cpu=not torch.cuda.is_available(), seed=seed,
            dataloader_num_workers=0, disable_tqdm=True,
            bf16=budget.bf16 and bf16_native("cuda" if torch.cuda.is_available() else "cpu"),
        )
        trainer = Trainer(model=network, args=args, train_dataset=rows["train"], eval_dataset=rows["val"],
                          data_collator=DataCollatorWithPadding(pipeline.tokenizer), compute_metrics=micro_f1)
        trained = trainer.train()
        history = [e for e in trainer.state.log_history if "eval_micro_f1" in e]
        best = max(history, key=lambda e: e["eval_micro_f1"])  # what load_best_model_at_end kept
        predicted = np.argmax(trainer.predict(rows["test"]).predictions, axis=-1).tolist()
    test = evaluate([r["labels"] for r in rows["test"]], predicted, dataset.label_map)
    return {
        "k": k, "seed": seed, "lr": lr, "val_micro_f1": best["eval_micro_f1"], "best_epoch": round(best["epoch"]),
        "test_micro_f1": test.micro_f1, "test_macro_f1_semeval": test.macro_f1_semeval,
        "val_per_epoch": [e["eval_micro_f1"] for e in history], "train_seconds": trained.metrics["train_runtime"],
    }


def rows_of(pipeline, instances) -> list[dict]:
    """cloce's marker encoding of each instance, as the Trainer's collator wants it."""
    rows = []
    for encoded in pipeline.encode(pipeline.tokenize(instances)):
        row = {"input_ids": list(encoded.input_ids), "attention_mask": [1] * len(encoded.input_ids), "labels": encoded.label}
        if encoded.token_type_ids is not None:
            row["token_type_ids"] = list(encoded.token_type_ids)
        rows.append(row)
    return rows


def run_peer(dataset: Dataset, ks: list[int], budget: PeerBudget, results_file: Path, model: str | None = None) -> list[dict]:
    """Per K: each lr on the search seed, then the best (on val) on every seed; resumable."""
    done = [json.loads(line) for line in results_file.read_text().splitlines()] if results_file.exists() else []

    def run(stage: str, k: int, seed: int, lr: float) -> dict:
        for record in done:
            if (record["stage"], record["k"], record["seed"], record["lr"]) == (stage, k, seed, lr):
                return record
        record = {"stage": stage, "budget": asdict(budget)} | peer_run(dataset, k, seed, lr, budget, model)
        print(f"[hf peer] {stage} K={k} seed {seed} lr {lr:g}: val {record['val_micro_f1']:.3f} "
              f"test {record['test_micro_f1']:.3f}", flush=True)
        results_file.parent.mkdir(parents=True, exist_ok=True)
        with results_file.open("a") as out:
            out.write(json.dumps(record) + "\n")
        done.append(record)
        return record

    finals = []
    for k in ks:
        searched = [run("search", k, budget.search_seed, lr) for lr in budget.lrs]
        best = max(searched, key=lambda r: r["val_micro_f1"])
        for seed in budget.seeds:
            if seed == budget.search_seed:
                finals.append(best | {"stage": "final"})  # same lr, same seed: that run
            else:
                finals.append(run("final", k, seed, best["lr"]))
    return finals


def budget_from(config: TrainConfig, lrs: tuple[float, ...], search_seed: int, seeds: tuple[int, ...]) -> PeerBudget:
    return PeerBudget(epochs=config.epochs, batch_size=config.batch_size, val_sample=config.val_sample, lrs=lrs,
                      search_seed=search_seed, seeds=seeds, weight_decay=config.weight_decay,
                      warmup_ratio=config.warmup_ratio, num_threads=2, bf16=config.bf16)
