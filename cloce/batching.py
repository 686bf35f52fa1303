"""Training batches that do not depend on the number of workers.

`batch_size` is the global batch: every worker of a run takes its share of the same global
batches, and its loss is weighted so that the workers together train on the global batch's
mean (`share_weight`). One worker and four give the same numbers, up to float summation order.

Length grouping, as Hugging Face's `LengthGroupedSampler` (`group_by_length`): shuffle, cut
into mega-batches, sort each by length, cut into batches, shuffle the batches. Random batches
of 8 on the SemEval K=16 sample are ~30% padding, and the cross-entropy pass pays for every
padded token.
"""
from __future__ import annotations

import math
import random
from typing import Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")

# The index a worker takes when a global batch holds fewer instances than there are workers:
# it still steps with the others (DistributedDataParallel waits for every worker), on one row
# weighted 0. EncodedSplit serves its last instance for it; its `index` stays -1.
STAND_IN = -1


def worker_share(batch: Sequence[T], num_replicas: int, rank: int) -> list[T]:
    """Worker `rank`'s contiguous share of one global batch; shares differ in size by one at
    most (so any batch size works), and are empty where the batch is smaller than the workers."""
    n = len(batch)
    return list(batch[rank * n // num_replicas : (rank + 1) * n // num_replicas])


def share_weight(share_size: int, global_size: int, num_replicas: int) -> float:
    """The factor on a worker's mean loss over its share so that the workers together step on
    the global batch's mean: DistributedDataParallel averages gradients over workers, so
    sum_w (n_w / N_global * workers) * mean_w / workers = the global mean. 1.0 exactly for one
    worker, or for equal shares: the single-worker numbers stay bit for bit what they were."""
    return share_size * num_replicas / global_size


class GlobalBatchSampler:
    """A batch sampler: this worker's share of each global batch of `batch_size` instances
    (`[STAND_IN]` where its share is empty). Every worker takes the same number of steps.

    The global batches depend on (seed, epoch) only, never on the number of workers: call
    `set_epoch` before each epoch; a run resumed after epoch E then sees the batches an
    uninterrupted run would have seen. Only the last global batch may be short.

    Not shuffled by length, the order is the one `DistributedSampler(shuffle=True)` gives a
    single worker, so one-worker runs keep the batches they had before this class.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, length_grouped: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank: must be in [0, {num_replicas}), got {rank}")
        self.lengths = list(lengths)
        self.batch_size, self.num_replicas, self.rank = batch_size, num_replicas, rank
        self.seed, self.length_grouped = seed, length_grouped
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches of all workers together; only the last one may be short."""
        if not self.length_grouped:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)  # DistributedSampler's permutation
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        rng = random.Random(f"cloce-batches:{self.seed}:{self.epoch}")
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.batch_size
        # Hugging Face's choice: 50 batches per mega-batch, but at least ~4 mega-batches, or a
        # small (K-shot) set would be sorted whole and every epoch would repeat the same batches.
        mega = size * max(1, min(len(order) // (4 * size), 50))
        batches = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -self.lengths[i])  # stable: ties stay shuffled
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        # A short batch stays last: the loop weights each step by its global batch's size.
        tail = [batches.pop()] if batches and len(batches[-1]) < size else []
        rng.shuffle(batches)
        return batches + tail

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            yield worker_share(batch, self.num_replicas, self.rank) or [STAND_IN]

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


def global_batch_sizes(n: int, batch_size: int) -> Iterator[int]:
    """The size of each global batch of an epoch over `n` instances: full but the last."""
    for start in range(0, n, batch_size):
        yield min(batch_size, n - start)
