"""Positive and negative pairs built from one epoch's own training predictions.

For each wrongly predicted x_e (gold r_g, predicted r_p):
  positive: a correctly predicted x_c of label r_g with x_e's entities swapped in, y = 0;
  negative: a correctly predicted x_n of label r_p with x_e's entities swapped in, y = 1.
A pair whose label has no correctly predicted instance is skipped and counted.
"""
from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

from cloce.encoding import TokenizedInstance, swap_entities

PULL, PUSH = 0, 1


@dataclass(frozen=True)
class ContrastivePair:
    anchor: TokenizedInstance  # the wrongly predicted x_e
    partner: TokenizedInstance  # a correct instance carrying x_e's entities
    y: int  # PULL (0) or PUSH (1)


@dataclass
class PairSet:
    pairs: list[ContrastivePair] = field(default_factory=list)
    n_correct: int = 0
    n_error: int = 0
    skipped_positive: int = 0
    skipped_negative: int = 0

    @property
    def n_positive(self) -> int:
        return sum(p.y == PULL for p in self.pairs)

    @property
    def n_negative(self) -> int:
        return sum(p.y == PUSH for p in self.pairs)

    def stats(self) -> dict[str, int]:
        return {
            "pairs_built": len(self.pairs),
            "pairs_positive": self.n_positive,
            "pairs_negative": self.n_negative,
            "pairs_skipped_positive": self.skipped_positive,
            "pairs_skipped_negative": self.skipped_negative,
            "train_correct": self.n_correct,
            "train_error": self.n_error,
            "pairs_digest": self.digest(),
        }

    def digest(self) -> int:
        """A fingerprint of exactly which pairs were built (48 bits: exact as a float metric)."""
        text = "|".join(f"{p.anchor.id}>{p.partner.id}>{p.y}" for p in self.pairs)
        return int(hashlib.sha1(text.encode()).hexdigest()[:12], 16)


def build_contrastive_pairs(
    train: Sequence[TokenizedInstance], predictions: Sequence[int], rng: random.Random
) -> PairSet:
    """`predictions[i]` is the epoch's prediction for `train[i]`; `rng` picks the partners."""
    if len(train) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(train)} training instances")
    correct_by_label: dict[int, list[TokenizedInstance]] = defaultdict(list)
    errors: list[tuple[TokenizedInstance, int]] = []
    for instance, predicted in zip(train, predictions):
        if predicted == instance.label:
            correct_by_label[instance.label].append(instance)
        else:
            errors.append((instance, predicted))

    result = PairSet(n_correct=len(train) - len(errors), n_error=len(errors))
    for x_e, predicted in errors:
        for label, y in ((x_e.label, PULL), (predicted, PUSH)):
            candidates = correct_by_label.get(label)
            if not candidates:
                if y == PULL:
                    result.skipped_positive += 1
                else:
                    result.skipped_negative += 1
                continue
            partner = swap_entities(rng.choice(candidates), x_e)
            result.pairs.append(ContrastivePair(x_e, partner, y))
    return result
