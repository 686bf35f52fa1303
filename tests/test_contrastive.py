"""The contrastive step: pairs from one epoch's own predictions, and the margin loss on cosine distance."""
import math
import random

import pytest
import torch

from cloce.contrastive import PULL, PUSH, build_contrastive_pairs
from cloce.data.types import EntityMention
from cloce.encoding import TokenizedInstance
from cloce.losses import BoundedMargin, contrastive_margin_loss


def instance(id_, words, head, tail, label, head_type=None, tail_type=None):
    """Words given as piece tuples, e.g. ((7,), (8, 9))."""
    return TokenizedInstance(id_, tuple(words), EntityMention(*head, head_type), EntityMention(*tail, tail_type), label)


# Two correctly predicted instances, one per label (1 and 2), and two errors between them.
CORRECT_1 = instance("c1", [(1,), (2,), (3,), (4,)], (0, 1), (2, 3), label=1)
CORRECT_2 = instance("c2", [(5,), (6,), (7,)], (2, 3), (0, 1), label=2)
ERROR_1_AS_2 = instance("e1", [(90,), (91, 92), (93,)], (1, 2), (2, 3), label=1, head_type="PERSON", tail_type="CITY")
ERROR_2_AS_1 = instance("e2", [(80,), (81,), (82,)], (0, 1), (2, 3), label=2)


def test_each_error_gets_a_positive_of_its_gold_label_and_a_negative_of_its_predicted_label():
    train = [CORRECT_1, CORRECT_2, ERROR_1_AS_2, ERROR_2_AS_1]
    pairs = build_contrastive_pairs(train, predictions=[1, 2, 2, 1], rng=random.Random(0))

    assert pairs.n_correct == 2 and pairs.n_error == 2
    assert [(p.anchor.id, p.partner.id, p.y) for p in pairs.pairs] == [
        ("e1", "c1<-e1", PULL),  # same gold label: pull together
        ("e1", "c2<-e1", PUSH),  # the label it was mistaken for: push apart
        ("e2", "c2<-e2", PULL),
        ("e2", "c1<-e2", PUSH),
    ]
    assert (PULL, PUSH) == (0, 1)
    assert pairs.n_positive == pairs.n_negative == 2


def test_the_partner_is_the_correct_sentence_carrying_the_errors_entities():
    pairs = build_contrastive_pairs([CORRECT_1, CORRECT_2, ERROR_1_AS_2], [1, 2, 2], random.Random(0))
    positive, negative = pairs.pairs

    # c1 = [1] 2 [3] 4 (head, tail) with e1's head (91, 92) and tail (93,) swapped in.
    assert positive.partner.words == ((91, 92), (2,), (93,), (4,))
    assert positive.partner.head == EntityMention(0, 1, "PERSON")
    assert positive.partner.tail == EntityMention(2, 3, "CITY")
    assert positive.partner.label == CORRECT_1.label
    # c2 = [5] 6 [7] (tail before head) likewise; the partner keeps c2's label.
    assert negative.partner.words == ((93,), (6,), (91, 92))
    assert negative.partner.head_words == ERROR_1_AS_2.head_words
    assert negative.partner.tail_words == ERROR_1_AS_2.tail_words
    assert negative.partner.label == CORRECT_2.label
    assert positive.anchor is negative.anchor is ERROR_1_AS_2


def test_a_label_without_correct_instances_skips_that_pair_and_counts_it():
    gold_3_as_1 = instance("e3", [(70,), (71,)], (0, 1), (1, 2), label=3)  # no correct instance of label 3
    gold_1_as_4 = instance("e4", [(60,), (61,)], (0, 1), (1, 2), label=1)  # no correct instance of label 4
    pairs = build_contrastive_pairs([CORRECT_1, gold_3_as_1, gold_1_as_4], [1, 1, 4], random.Random(0))

    assert [(p.anchor.id, p.y) for p in pairs.pairs] == [("e3", PUSH), ("e4", PULL)]
    assert pairs.skipped_positive == 1 and pairs.skipped_negative == 1
    assert pairs.stats()["pairs_skipped_positive"] == 1


def test_the_seed_decides_the_partners():
    correct = [instance(f"c{i}", [(i,), (i + 100,)], (0, 1), (1, 2), label=i % 2) for i in range(20)]
    errors = [instance(f"e{i}", [(i + 200,), (i + 300,)], (0, 1), (1, 2), label=i % 2) for i in range(10)]
    train = correct + errors
    predictions = [c.label for c in correct] + [1 - e.label for e in errors]

    def partners(seed):
        return [p.partner.id for p in build_contrastive_pairs(train, predictions, random.Random(seed)).pairs]

    assert partners(3) == partners(3)
    assert partners(3) != partners(4)
    assert len(partners(3)) == 20


def test_predictions_must_match_the_training_set():
    with pytest.raises(ValueError, match="2 predictions for 1 training instances"):
        build_contrastive_pairs([CORRECT_1], [1, 1], random.Random(0))


# --- the margin loss ------------------------------------------------------------------


def hand_distance(a, b):
    """1 - cos(a, b), written out."""
    dot = sum(x * y for x, y in zip(a, b))
    return 1.0 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# Orthogonal (D = 1), identical direction (D = 0), opposite (D = 2); lengths differ on purpose.
S_I = [[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]]
S_J = [[0.0, 5.0], [2.0, 2.0], [0.0, -1.0]]


def test_hand_distances_are_one_zero_two():
    assert [hand_distance(a, b) for a, b in zip(S_I, S_J)] == pytest.approx([1.0, 0.0, 2.0])


@pytest.mark.parametrize("margin", [0.5, 1.5])
@pytest.mark.parametrize("y", [[0, 0, 0], [1, 1, 1], [0, 1, 1]])
def test_contrastive_margin_loss_matches_the_formula_by_hand(y, margin):
    expected = sum(
        (1 - yk) * hand_distance(a, b) ** 2 + yk * 0.5 * max(0.0, margin - hand_distance(a, b)) ** 2
        for a, b, yk in zip(S_I, S_J, y)
    ) / len(y)
    loss = contrastive_margin_loss(torch.tensor(S_I), torch.tensor(S_J), torch.tensor(y), margin)

    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_margin_loss_values_for_the_three_cases():
    s_i, s_j = torch.tensor(S_I), torch.tensor(S_J)
    # positives: mean of D^2 = (1 + 0 + 4) / 3
    assert contrastive_margin_loss(s_i, s_j, torch.tensor([0, 0, 0]), 0.5).item() == pytest.approx(5 / 3, abs=1e-6)
    # negatives, m = 0.5: only the identical pair is closer than m: 1/2 * 0.5^2 / 3
    assert contrastive_margin_loss(s_i, s_j, torch.tensor([1, 1, 1]), 0.5).item() == pytest.approx(0.125 / 3, abs=1e-6)
    # negatives, m = 1.5: orthogonal 1/2 * 0.5^2, identical 1/2 * 1.5^2, opposite 0
    assert contrastive_margin_loss(s_i, s_j, torch.tensor([1, 1, 1]), 1.5).item() == pytest.approx(1.25 / 3, abs=1e-6)


def test_bounded_margin_starts_at_its_initial_value():
    assert BoundedMargin(0.5, low=0.05, high=1.0)().item() == pytest.approx(0.5, abs=1e-6)


def test_bounded_margin_stays_in_range_when_the_loss_drives_it_down():
    margin = BoundedMargin(0.5, low=0.2, high=1.0)
    optimiser = torch.optim.SGD(margin.parameters(), lr=100.0)
    same = torch.ones(4, 3)  # D = 0: the push term 1/2 * m^2 only shrinks as m does
    for _ in range(300):
        optimiser.zero_grad()
        contrastive_margin_loss(same, same, torch.ones(4), margin()).backward()
        optimiser.step()

    assert 0.2 <= margin().item() < 0.25  # drifted to the floor, never below it


def test_bounded_margin_stays_in_range_when_pushed_up():
    margin = BoundedMargin(0.5, low=0.2, high=1.0)
    optimiser = torch.optim.SGD(margin.parameters(), lr=100.0)
    for _ in range(300):
        optimiser.zero_grad()
        (-margin()).backward()
        optimiser.step()

    assert 0.95 < margin().item() <= 1.0


def test_bounded_margin_rejects_an_initial_value_outside_its_range():
    with pytest.raises(ValueError, match="initial margin 1.5"):
        BoundedMargin(1.5, low=0.05, high=1.0)
