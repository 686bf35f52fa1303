"""Training batches: every instance once per epoch, little padding with length grouping, and
the same global batches for one worker or several (`batch_size` is the global batch)."""
from __future__ import annotations

import random

from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from cloce.batching import STAND_IN, GlobalBatchSampler, global_batch_sizes, share_weight

# Sentences of 10 to 60 word pieces: a random batch of 8 pads most of them to ~55.
_rng = random.Random(0)
LENGTHS = [_rng.randint(10, 60) for _ in range(203)]


def grouped(batch_size: int = 8, seed: int = 1, **kwargs) -> GlobalBatchSampler:
    return GlobalBatchSampler(LENGTHS, batch_size, seed=seed, length_grouped=True, **kwargs)


def batches(sampler: GlobalBatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


def epoch_order(sampler: GlobalBatchSampler, epoch: int) -> list[int]:
    return [i for batch in batches(sampler, epoch) for i in batch]


def padding_fraction(batch_list: list[list[int]]) -> float:
    padded = sum(len(b) * max(LENGTHS[i] for i in b) for b in batch_list)
    return 1 - sum(LENGTHS[i] for b in batch_list for i in b) / padded


def test_every_instance_appears_once_per_epoch():
    for sampler in (grouped(), GlobalBatchSampler(LENGTHS, 8, seed=1)):
        for epoch in (1, 2):
            assert sorted(epoch_order(sampler, epoch)) == list(range(len(LENGTHS)))
        assert len(sampler) == len(batches(sampler)) == 26  # 203 = 25 x 8 + 3


def test_the_order_is_a_function_of_seed_and_epoch():
    first, again = grouped(), grouped()  # e.g. a run resumed after epoch 2
    assert epoch_order(first, 3) == epoch_order(again, 3)
    assert epoch_order(first, 3) != epoch_order(first, 4)
    assert epoch_order(first, 3) != epoch_order(grouped(seed=2), 3)


def test_batches_are_of_similar_length():
    shuffled = batches(GlobalBatchSampler(LENGTHS, 8, seed=1))
    assert padding_fraction(batches(grouped())) < padding_fraction(shuffled) / 2


def test_the_set_of_batches_changes_between_epochs():
    sampler = grouped()
    as_sets = lambda epoch: {frozenset(b) for b in batches(sampler, epoch)}
    assert len(as_sets(1) & as_sets(2)) < len(as_sets(1)) / 2


def test_one_worker_without_grouping_keeps_the_distributed_samplers_batches():
    """The order one-worker runs had before the global batch sampler: their numbers still hold."""
    before = DistributedSampler(LENGTHS, num_replicas=1, rank=0, shuffle=True, seed=1)
    before.set_epoch(3)
    old = [b.tolist() for b in DataLoader(range(len(LENGTHS)), batch_size=8, sampler=before)]
    assert batches(GlobalBatchSampler(LENGTHS, 8, seed=1), epoch=3) == old


def test_workers_split_the_global_batches_of_one():
    for length_grouped in (True, False):
        one = batches(GlobalBatchSampler(LENGTHS, 16, seed=1, length_grouped=length_grouped))
        for workers in (2, 3):
            ranks = [batches(GlobalBatchSampler(LENGTHS, 16, workers, rank, seed=1, length_grouped=length_grouped))
                     for rank in range(workers)]
            assert all(len(r) == len(one) == 13 for r in ranks)  # 203 = 12 x 16 + 11: the same steps
            for step, batch in enumerate(one):
                assert sum((r[step] for r in ranks), []) == batch  # nothing repeated, nothing left out
    three = [batches(GlobalBatchSampler(LENGTHS, 16, 3, rank, seed=1)) for rank in range(3)]
    assert [len(r[0]) for r in three] == [5, 5, 6] and [len(r[-1]) for r in three] == [3, 4, 4]


def test_a_worker_without_a_share_takes_a_stand_in_weighted_zero():
    lengths = [10] * 9  # global batches of 4: 4, 4, 1
    ranks = [batches(GlobalBatchSampler(lengths, 4, 2, rank, seed=1)) for rank in (0, 1)]
    assert ranks[0][-1] == [STAND_IN] and len(ranks[1][-1]) == 1
    assert list(global_batch_sizes(9, 4)) == [4, 4, 1]
    assert share_weight(0, 1, 2) == 0.0 and share_weight(1, 1, 2) == 2.0  # DDP halves it back
    assert share_weight(8, 8, 1) == share_weight(4, 8, 2) == 1.0
