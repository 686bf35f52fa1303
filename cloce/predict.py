"""Predict relations for a file with a saved checkpoint: jsonl out, the input records plus
`predicted` and `score`."""
from __future__ import annotations

import json
from pathlib import Path

from cloce.checkpoint import load_checkpoint
from cloce.data.readers import read_records
from cloce.encoding import EncodedSplit
from cloce.runtime import Runtime, pick_device
from cloce.inference import predict_split


def predict_file(checkpoint: str | Path, input_path: str | Path, output_path: str | Path | None,
                 fmt: str = "auto", batch_size: int = 64, device: str = "auto") -> list[dict]:
    pipeline = load_checkpoint(checkpoint)
    label_map = pipeline.label_map
    # Input may be unlabelled; labelled input must use the checkpoint's labels.
    placeholder = label_map.no_relation or label_map.labels[0]
    records = read_records(input_path, fmt, label_map, unlabeled_as=placeholder)
    runtime = Runtime(device=pick_device(device))
    pipeline.model.to(runtime.device)
    split = EncodedSplit(pipeline.encode(pipeline.tokenize([inst for _, inst in records])))
    probs = predict_split(pipeline.model, pipeline, split, batch_size, runtime)
    scores, ids = probs.max(-1) if len(split) else (probs, probs)
    rows = [
        record | {"predicted": label_map.labels[i], "score": round(float(s), 6)}
        for (record, _), i, s in zip(records, ids.tolist(), scores.tolist())
    ]
    if output_path is not None:
        Path(output_path).parent.mkdir(parents=True, exist_ok=True)
        with open(output_path, "w") as sink:
            for row in rows:
                sink.write(json.dumps(row) + "\n")
    return rows
