"""Length-grouped training batches: every instance once per epoch, little padding, and the
same global batches for one worker or two."""
from __future__ import annotations

import random

from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from cloce.batching import LengthGroupedSampler

# Sentences of 10 to 60 word pieces: a random batch of 8 pads most of them to ~55.
_rng = random.Random(0)
LENGTHS = [_rng.randint(10, 60) for _ in range(203)]


def epoch_order(sampler: LengthGroupedSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


def batches(sampler, batch_size: int, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return [b.tolist() for b in DataLoader(range(len(LENGTHS)), batch_size=batch_size, sampler=sampler)]


def padding_fraction(batch_list: list[list[int]]) -> float:
    padded = sum(len(b) * max(LENGTHS[i] for i in b) for b in batch_list)
    return 1 - sum(LENGTHS[i] for b in batch_list for i in b) / padded


def test_every_instance_appears_once_per_epoch():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=8, seed=1)
    for epoch in (1, 2):
        assert sorted(epoch_order(sampler, epoch)) == list(range(len(LENGTHS)))
    assert len(sampler) == len(LENGTHS)


def test_the_order_is_a_function_of_seed_and_epoch():
    first = LengthGroupedSampler(LENGTHS, batch_size=8, seed=1)
    again = LengthGroupedSampler(LENGTHS, batch_size=8, seed=1)  # e.g. a run resumed after epoch 2
    assert epoch_order(first, 3) == epoch_order(again, 3)
    assert epoch_order(first, 3) != epoch_order(first, 4)
    assert epoch_order(first, 3) != epoch_order(LengthGroupedSampler(LENGTHS, batch_size=8, seed=2), 3)


def test_batches_are_of_similar_length():
    grouped = batches(LengthGroupedSampler(LENGTHS, batch_size=8, seed=1), 8)
    shuffled = batches(DistributedSampler(LENGTHS, num_replicas=1, rank=0, seed=1), 8)
    assert padding_fraction(grouped) < padding_fraction(shuffled) / 2


def test_the_set_of_batches_changes_between_epochs():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=8, seed=1)
    as_sets = lambda epoch: {frozenset(b) for b in batches(sampler, 8, epoch)}
    assert len(as_sets(1) & as_sets(2)) < len(as_sets(1)) / 2


def test_two_workers_split_the_global_batches_of_one():
    one = batches(LengthGroupedSampler(LENGTHS, batch_size=16, num_replicas=1, rank=0, seed=1), 16)
    ranks = [batches(LengthGroupedSampler(LENGTHS, batch_size=8, num_replicas=2, rank=r, seed=1), 8) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 13  # 203 = 12 x 16 + 11
    for step, batch in enumerate(one[:-1]):
        assert ranks[0][step] + ranks[1][step] == batch
    # The short last batch (11) is padded with one repeat, as DistributedSampler does: 6 each.
    assert len(ranks[0][-1]) == len(ranks[1][-1]) == 6
    assert set(ranks[0][-1] + ranks[1][-1]) == set(one[-1])
