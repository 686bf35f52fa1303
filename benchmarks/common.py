"""What every benchmark shares: the SemEval K-shot data encoded once, timing, threads."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader

from cloce.data.dataset import Dataset, load_dataset
from cloce.data.sampling import sample_k_shot
from cloce.encoding import Collator, EncodedSplit
from cloce.pipeline import RelationPipeline, build_pipeline, type_vocabulary
from cloce.variants import get_variant

BATCH = 16


@dataclass
class Prepared:
    dataset: Dataset
    pipeline: RelationPipeline
    split: EncodedSplit  # the K-shot training sample, encoded for this pipeline
    batches: list[dict[str, torch.Tensor]]  # pre-collated, shuffled once with the seed


def prepare(variant: str, k: int = 16, seed: int = 1, max_seq_len: int = 256) -> Prepared:
    torch.manual_seed(seed)
    dataset = load_dataset(None)
    sample = sample_k_shot(dataset.train, dataset.label_map, k, seed)
    types = type_vocabulary([*dataset.train, *dataset.val, *dataset.test])
    pipeline = build_pipeline(get_variant(variant), dataset.label_map, types, None, max_seq_len)
    split = EncodedSplit(pipeline.encode(pipeline.tokenize(sample.instances)))
    loader = DataLoader(split, batch_size=BATCH, shuffle=True, collate_fn=Collator(pipeline.tokenizer.pad_token_id),
                        generator=torch.Generator().manual_seed(seed))
    return Prepared(dataset, pipeline, split, list(loader))


def alternate(runs: dict[str, Callable[[], float]], rounds: int = 3) -> dict[str, float]:
    """Each contender `rounds` times, interleaved (A B A B ...) so machine noise hits both;
    the median of each. A contender returns its own measure (samples/s or seconds)."""
    seen: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seen[name].append(run())
    return {name: statistics.median(values) for name, values in seen.items()}


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started
