"""Prediction speed (4): `python -m cloce predict` (in-process: checkpoint load, reading and
tokenising the file, batched forward) vs a bare `torch.inference_mode` forward over the
same sentences already encoded, in file order."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks.common import alternate, prepare, timed
from cloce.checkpoint import load_checkpoint, save_checkpoint
from cloce.data.dataset import default_data_dir
from cloce.encoding import Collator, EncodedSplit
from cloce.predict import predict_file

EVAL_BATCH = 64


def predict_vs_bare_forward(rounds: int = 3) -> dict:
    prep = prepare("prompt_ki")
    test_file = default_data_dir() / "test.txt"
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = save_checkpoint(prep.pipeline, Path(directory) / "checkpoint")
        pipeline = load_checkpoint(checkpoint)
        split = EncodedSplit(pipeline.encode(pipeline.tokenize(prep.dataset.test)))
        collate = Collator(pipeline.tokenizer.pad_token_id)
        n = len(split)

        def cli_predict() -> float:
            return n / timed(lambda: predict_file(checkpoint, test_file, None, batch_size=EVAL_BATCH))

        @torch.inference_mode()
        def forward_all():
            pipeline.model.eval()
            for start in range(0, n, EVAL_BATCH):
                pipeline.model(collate([split[i] for i in range(start, min(start + EVAL_BATCH, n))]))

        def bare_forward() -> float:
            return n / timed(forward_all)

        speeds = alternate({"predict": cli_predict, "bare": bare_forward}, rounds)
    return {"sentences": n, "predict_samples_per_s": speeds["predict"], "bare_samples_per_s": speeds["bare"],
            "ratio": speeds["predict"] / speeds["bare"], "target": ">= 0.9"}
