"""K-shot training sets: K instances of every relation, the no-relation label included
(KnowPrompt's protocol), reproducible from (K, seed) alone."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from .types import LabelMap, RelationInstance


class KShotError(ValueError):
    """The pool cannot give K instances of some relation, or holds a relation outside the label map."""


@dataclass(frozen=True)
class KShotSample:
    k: int
    seed: int
    instances: tuple[RelationInstance, ...]  # by label id, then by position in the pool
    ids: tuple[str, ...]
    empty_labels: tuple[str, ...]  # labels with no instance in the pool: kept, reported, not sampled

    def to_json(self) -> dict:
        return {
            "k": self.k,
            "seed": self.seed,
            "size": len(self.instances),
            "ids": list(self.ids),
            "empty_labels": list(self.empty_labels),
        }


def sample_k_shot(
    instances: Sequence[RelationInstance], label_map: LabelMap, k: int, seed: int, allow_short: bool = False
) -> KShotSample:
    """K instances of each label, drawn without replacement from that label's instances.

    `allow_short` takes all of a smaller class instead of failing (a K-shot validation set:
    SemEval's val has a single `Entity-Destination(e2,e1)`).

    Each label has its own generator seeded by (K, seed, label), so one label's sample does
    not change when other labels, other seeds or the call order change.
    """
    if k < 1:
        raise ValueError(f"K must be at least 1, got {k}")
    positions_by_label: dict[str, list[int]] = {label: [] for label in label_map.labels}
    for position, instance in enumerate(instances):
        if instance.relation not in label_map:
            raise KShotError(
                f"instance {instance.id!r} has relation {instance.relation!r}, "
                "which is not in the label map"
            )
        positions_by_label[instance.relation].append(position)

    too_small = {
        label: len(positions)
        for label, positions in positions_by_label.items()
        if 0 < len(positions) < k
    }
    if too_small and not allow_short:
        listed = ", ".join(f"{label!r} has {size}" for label, size in too_small.items())
        raise KShotError(
            f"K={k} is more than some relations have in the pool ({listed}); "
            f"use K <= {min(too_small.values())}"
        )

    chosen: list[int] = []
    for label in label_map.labels:  # label-id order
        positions = positions_by_label[label]
        if positions:
            # A str seed is hashed with sha512: the same draw on every run and machine.
            rng = random.Random(f"cloce-kshot:{k}:{seed}:{label}")
            chosen.extend(sorted(rng.sample(positions, min(k, len(positions)))))

    sample = tuple(instances[p] for p in chosen)
    return KShotSample(
        k=k,
        seed=seed,
        instances=sample,
        ids=tuple(i.id for i in sample),
        empty_labels=tuple(label for label, ps in positions_by_label.items() if not ps),
    )


def fixed_subset(instances: Sequence[RelationInstance], size: int | None,
                 name: str = "cloce-test-subset") -> list[RelationInstance]:
    """`size` instances drawn once for all runs (no run seed): every variant, K and seed of a
    study is tested (or validated) on the same sentences. None, or a size >= the pool, keeps
    all of them."""
    if size is None or size >= len(instances):
        return list(instances)
    chosen = sorted(random.Random(name).sample(range(len(instances)), size))
    return [instances[i] for i in chosen]
