"""Inference on an encoded split: class probabilities (`predict_split`, also behind
`cloce predict`) and their evaluation against the gold labels (`evaluate_split`)."""
from __future__ import annotations

import torch

from cloce.config import TrainConfig
from cloce.encoding import Collator, EncodedSplit
from cloce.metrics import evaluate
from cloce.pipeline import RelationPipeline
from cloce.runtime import Runtime, autocast, to_device, unwrap


@torch.inference_mode()
def predict_split(model, pipeline: RelationPipeline, split: EncodedSplit, batch_size: int, runtime: Runtime, bf16=False):
    """Class probabilities for every instance of `split`, batched by length to cut padding."""
    model = unwrap(model)
    model.eval()
    order = sorted(range(len(split)), key=lambda i: len(split.items[i].input_ids))
    collate = Collator(pipeline.tokenizer.pad_token_id)
    probabilities: list[torch.Tensor] = [None] * len(split)  # type: ignore[list-item]
    for start in range(0, len(order), batch_size):
        batch = to_device(collate([split[i] for i in order[start : start + batch_size]]), runtime.device)
        with autocast(runtime.device, bf16):
            probs = model(batch).float().softmax(-1).cpu()
        for row, index in enumerate(batch["index"].tolist()):
            probabilities[index] = probs[row]
    return torch.stack(probabilities) if probabilities else torch.empty(0)


def evaluate_split(model, pipeline, split: EncodedSplit, config: TrainConfig, runtime: Runtime):
    probs = predict_split(model, pipeline, split, config.eval_batch_size, runtime, config.bf16)
    predictions = probs.argmax(-1).tolist()
    gold = [e.label for e in split.items]
    return evaluate(gold, predictions, pipeline.label_map), predictions
