"""K-shot samples: K per relation, the no-relation label included, reproducible from (K, seed)."""
from collections import Counter

import pytest

from cloce.data import (
    EntityMention,
    KShotError,
    LabelMap,
    RelationInstance,
    sample_k_shot,
)

LABELS = LabelMap(("no_relation", "born_in", "founded", "works_for"), "no_relation")


def pool(counts: dict[str, int]) -> list[RelationInstance]:
    """Labels interleaved, so file order and label order differ."""
    remaining = dict(counts)
    instances = []
    while any(remaining.values()):
        for label in remaining:
            if remaining[label]:
                remaining[label] -= 1
                instances.append(RelationInstance(
                    f"{label}-{remaining[label]}", ("a", "b"), EntityMention(0, 1), EntityMention(1, 2), label
                ))
    return instances


POOL = pool({"no_relation": 10, "born_in": 4, "founded": 6})


def test_k_instances_of_every_label_including_no_relation():
    sample = sample_k_shot(POOL, LABELS, k=3, seed=1)
    assert Counter(i.relation for i in sample.instances) == {"no_relation": 3, "born_in": 3, "founded": 3}
    assert sample.ids == tuple(i.id for i in sample.instances)


def test_instances_come_by_label_id_then_pool_position():
    sample = sample_k_shot(POOL, LABELS, k=3, seed=1)
    position = {id(i): n for n, i in enumerate(POOL)}
    keys = [(LABELS.id_of(i.relation), position[id(i)]) for i in sample.instances]
    assert keys == sorted(keys)


def test_a_label_absent_from_the_pool_is_reported_not_an_error():
    assert sample_k_shot(POOL, LABELS, k=2, seed=1).empty_labels == ("works_for",)


def test_a_label_with_fewer_than_k_instances_is_named_with_its_size():
    with pytest.raises(KShotError, match="K=5 .*'born_in' has 4"):
        sample_k_shot(POOL, LABELS, k=5, seed=1)


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="K must be at least 1"):
        sample_k_shot(POOL, LABELS, k=0, seed=1)


def test_a_relation_outside_the_label_map_is_an_error():
    with pytest.raises(KShotError, match="'founded'"):
        sample_k_shot(POOL, LabelMap(("no_relation", "born_in"), "no_relation"), k=1, seed=1)


def test_a_labels_draw_does_not_depend_on_the_other_labels():
    alone = sample_k_shot(pool({"founded": 6}), LABELS, k=3, seed=7)
    mixed = sample_k_shot(POOL, LABELS, k=3, seed=7)
    assert alone.ids == tuple(i for i in mixed.ids if i.startswith("founded"))


def test_to_json_records_what_was_drawn():
    sample = sample_k_shot(POOL, LABELS, k=2, seed=4)
    assert sample.to_json() == {
        "sampler": "per_label", "k": 2, "seed": 4, "size": 6, "ids": list(sample.ids), "empty_labels": ["works_for"],
    }


# --- on SemEval's train split ------------------------------------------------------------

def test_semeval_16_shot_has_16_of_each_of_18_labels(semeval):
    sample = sample_k_shot(semeval.train, semeval.label_map, k=16, seed=1)
    counts = Counter(i.relation for i in sample.instances)
    assert len(counts) == 18 and set(counts.values()) == {16}
    assert sample.empty_labels == ("Entity-Destination(e2,e1)",)


def test_semeval_sample_is_the_same_when_drawn_again(semeval):
    first = sample_k_shot(semeval.train, semeval.label_map, k=16, seed=1)
    assert sample_k_shot(semeval.train, semeval.label_map, k=16, seed=1) == first


def test_semeval_seed_3_does_not_depend_on_earlier_draws(semeval):
    alone = sample_k_shot(semeval.train, semeval.label_map, k=16, seed=3)
    for seed in (1, 2, 3):
        last = sample_k_shot(semeval.train, semeval.label_map, k=16, seed=seed)
    assert last == alone


def test_semeval_different_seeds_draw_different_samples(semeval):
    one = sample_k_shot(semeval.train, semeval.label_map, k=16, seed=1)
    two = sample_k_shot(semeval.train, semeval.label_map, k=16, seed=2)
    assert set(one.ids) != set(two.ids)


def test_semeval_k_above_the_smallest_class_names_it(semeval):
    with pytest.raises(KShotError, match=r"'Member-Collection\(e1,e2\)' has 64"):
        sample_k_shot(semeval.train, semeval.label_map, k=65, seed=1)


def test_fixed_test_subset_is_the_same_for_every_call_and_keeps_file_order():
    from cloce.data.sampling import fixed_subset

    first = fixed_subset(POOL, 7)
    assert [i.id for i in first] == [i.id for i in fixed_subset(POOL, 7)]
    assert len(first) == 7 and len({i.id for i in first}) == 7
    positions = [POOL.index(i) for i in first]
    assert positions == sorted(positions)
    assert fixed_subset(POOL, None) == POOL and fixed_subset(POOL, 100) == POOL
