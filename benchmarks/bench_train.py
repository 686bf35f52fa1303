"""Training speed: cloce's CE pass vs a bare PyTorch loop (1), the contrastive step's
overhead (2), and cloce fine-tuning vs the Hugging Face Trainer (3)."""
from __future__ import annotations

import copy
import math
import os
import tempfile

import torch
from torch.nn import functional as F

from benchmarks.common import BATCH, alternate, prepare, timed
from cloce.config import TrainConfig
from cloce.runtime import Runtime
from cloce.optim import linear_warmup_decay, model_adamw
from cloce.train import classification_pass, train


def ce_pass_vs_bare_loop(k: int = 16, rounds: int = 3) -> dict:
    """One epoch over the same pre-collated batches, from the same initial weights."""
    prep = prepare("prompt_ki", k=k)
    model, batches = prep.pipeline.model, prep.batches
    initial = copy.deepcopy(model.state_dict())
    config = TrainConfig(variant="prompt_ki", k=k, lr=1e-4)
    samples = sum(len(b["labels"]) for b in batches)

    def cloce_pass() -> float:
        model.load_state_dict(initial)
        optimizer = model_adamw(model, config.lr, config.weight_decay)
        scheduler = linear_warmup_decay(optimizer, len(batches), config.warmup_ratio)
        return samples / timed(lambda: classification_pass(model, batches, optimizer, scheduler, config, Runtime()))

    def bare_loop() -> float:
        model.load_state_dict(initial)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
        model.train()

        def epoch():
            for batch in batches:
                loss = F.cross_entropy(model(batch), batch["labels"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return samples / timed(epoch)

    speeds = alternate({"cloce": cloce_pass, "bare": bare_loop}, rounds)
    return {"samples": samples, "cloce_samples_per_s": speeds["cloce"], "bare_samples_per_s": speeds["bare"],
            "ratio": speeds["cloce"] / speeds["bare"], "target": ">= 0.85"}


def contrastive_overhead(k: int = 16, epochs: int = 2) -> dict:
    """cloce_d: the contrastive step's cost per sentence it encodes (forward + backward) over
    the CE pass's per sentence, in the same run (the step encodes ~2.5x the CE pass's
    sentences: two pairs per training error, anchors once per mini-batch; seconds alone
    measure the method's pair count, not the implementation). Also checks that no sentence
    is encoded twice within one contrastive mini-batch."""
    import time

    import cloce.train as loop

    prep = prepare("cloce_d", k=k)
    config = TrainConfig(variant="cloce_d", k=k, epochs=epochs, kshot_val=True, test_sample=1, lr=3e-4)
    seen = {"sequences": 0, "tokens": 0, "encoded_twice": 0, "seconds": 0.0}
    real_pass = loop.contrastive_pass

    def counting_pass(model, pipeline, pairs, optimizer, margin, kind, config, runtime):
        for start in range(0, len(pairs.pairs), config.cl_batch_size):
            chunk = pairs.pairs[start : start + config.cl_batch_size]
            anchors = {id(p.anchor): p.anchor for p in chunk}.values()  # what contrastive_pass encodes
            encoded = [tuple(pipeline.template.encode(x).input_ids) for x in [*anchors, *(p.partner for p in chunk)]]
            seen["sequences"] += len(encoded)
            seen["tokens"] += sum(map(len, encoded))
            seen["encoded_twice"] += len(encoded) - len(set(encoded))
        began = time.perf_counter()
        try:
            return real_pass(model, pipeline, pairs, optimizer, margin, kind, config, runtime)
        finally:
            seen["seconds"] += time.perf_counter() - began

    loop.contrastive_pass = counting_pass
    try:
        result = train(config, prep.dataset)
    finally:
        loop.contrastive_pass = real_pass
    ce = sum(r.ce_seconds for r in result.history)
    cl = seen["seconds"]
    ce_sequences = epochs * len(prep.split)
    ce_tokens = epochs * sum(len(e.input_ids) for e in prep.split.items)
    per_ce, per_cl = ce / ce_sequences, cl / max(1, seen["sequences"])
    return {"epochs": epochs, "ce_seconds": ce, "cl_seconds": cl, "ratio": per_cl / per_ce, "target": "<= 1.1",
            "cl_over_ce_seconds": cl / ce, "ce_sequences": ce_sequences, "cl_sequences": seen["sequences"],
            "cl_tokens_per_sequence": seen["tokens"] / max(1, seen["sequences"]),
            "ce_tokens_per_sequence": ce_tokens / ce_sequences,
            "encoded_twice_in_a_minibatch": seen["encoded_twice"],
            "pairs_per_epoch": [r.pairs.get("pairs_built", 0) for r in result.history],
            "train_errors_per_epoch": [r.pairs.get("train_error", 0) for r in result.history]}


def finetune_vs_hf_trainer(k: int = 16, epochs: int = 2, rounds: int = 2, bf16: bool = False) -> dict:
    """Samples/s of training: cloce `finetune` vs `transformers.Trainer` fine-tuning the same
    backbone ([CLS] head) on the same marker-encoded K-shot sentences, batch and length; both
    in their default fp32, or (`bf16`) both with bf16 autocast (cloce: where native only)."""
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    prep = prepare("finetune", k=k)
    rows = [{"input_ids": list(e.input_ids), "attention_mask": [1] * len(e.input_ids), "labels": e.label}
            | ({"token_type_ids": list(e.token_type_ids)} if e.token_type_ids is not None else {})
            for e in prep.split.items]
    samples = epochs * len(rows)

    def cloce_finetune() -> float:
        config = TrainConfig(variant="finetune", k=k, epochs=epochs, batch_size=BATCH, kshot_val=True,
                             test_sample=1, lr=3e-4, bf16=bf16)
        history = train(config, prep.dataset).history
        return samples / sum(r.ce_seconds for r in history)

    def hf_trainer() -> float:
        model = AutoModelForSequenceClassification.from_pretrained(prep.pipeline.model_name, num_labels=len(prep.dataset.label_map))
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=epochs, learning_rate=3e-4,
                warmup_steps=int(0.1 * epochs * math.ceil(len(rows) / BATCH)), weight_decay=0.01, save_strategy="no", eval_strategy="no", report_to=[],
                logging_strategy="no", use_cpu=True, seed=1, dataloader_num_workers=0, disable_tqdm=True, bf16=bf16,
            )
            trainer = Trainer(model=model, args=args, train_dataset=rows,
                              data_collator=DataCollatorWithPadding(prep.pipeline.tokenizer))
            metrics = trainer.train().metrics
        return metrics["train_samples_per_second"]

    speeds = alternate({"cloce": cloce_finetune, "hf_trainer": hf_trainer}, rounds)
    return {"samples": samples, "cloce_samples_per_s": speeds["cloce"], "hf_trainer_samples_per_s": speeds["hf_trainer"],
            "ratio": speeds["cloce"] / speeds["hf_trainer"], "target": ">= 1.2", "bf16": bf16,
            "hf_optimizer": "adamw_torch_fused (TrainingArguments default)"}


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(ce_pass_vs_bare_loop(rounds=1))
