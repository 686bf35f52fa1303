"""K-shot training sets: K instances of every relation, the no-relation label included
(KnowPrompt's protocol), reproducible from (K, seed) alone.

Two draws (`TrainConfig.kshot_sampler`):
- "knowprompt" (the default): KnowPrompt's own sets (zjunlp/KnowPrompt, generate_k_shot.py).
  It shuffles the whole train list in place with numpy's seed 1, then 2, ..., so seed s's
  set is the list after s compounded shuffles, and keeps the first K of each label in that
  order. Seed s therefore depends on seeds 1..s-1 (KnowPrompt runs them in one call), and
  the same (K, seed) here gives exactly the lines its script writes.
- "per_label": each label drawn by its own generator seeded by (K, seed, label): a label's
  sample changes with nothing else. The project's draw before KnowPrompt's sets came in.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from .types import LabelMap, RelationInstance


class KShotError(ValueError):
    """The pool cannot give K instances of some relation, or holds a relation outside the label map."""


@dataclass(frozen=True)
class KShotSample:
    k: int
    seed: int
    instances: tuple[RelationInstance, ...]  # in the order the sampler gives them
    ids: tuple[str, ...]
    empty_labels: tuple[str, ...]  # labels with no instance in the pool: kept, reported, not sampled
    sampler: str = "per_label"  # KShotSampler, or "folder" (a ready-made K-shot file: cloce/data/kshot_folder.py)
    source: str | None = None  # the ready-made file it was read from

    def to_json(self) -> dict:
        return {
            "sampler": self.sampler,
            **({"source": self.source} if self.source else {}),
            "k": self.k,
            "seed": self.seed,
            "size": len(self.instances),
            "ids": list(self.ids),
            "empty_labels": list(self.empty_labels),
        }


KShotSampler = Literal["knowprompt", "per_label"]
KSHOT_SAMPLERS: tuple[str, ...] = ("knowprompt", "per_label")


def draw_k_shot(instances: Sequence[RelationInstance], label_map: LabelMap, k: int, seed: int,
                sampler: KShotSampler = "knowprompt", allow_short: bool = False) -> KShotSample:
    """The K-shot sample of `sampler` (the module's docstring says both)."""
    if sampler == "knowprompt":
        return knowprompt_k_shot(instances, label_map, k, seed, allow_short)
    if sampler == "per_label":
        return sample_k_shot(instances, label_map, k, seed, allow_short)
    raise ValueError(f"kshot_sampler: {sampler!r} is not one of {', '.join(KSHOT_SAMPLERS)}")


def knowprompt_k_shot(instances: Sequence[RelationInstance], label_map: LabelMap, k: int, seed: int,
                      allow_short: bool = False) -> KShotSample:
    """KnowPrompt's generate_k_shot.py: `np.random.seed(s); np.random.shuffle(dataset)` for
    s = 1..seed on one list, in place, then per label (in the order labels first appear in the
    shuffled list) its first K instances. `instances` in file order, as the script reads them."""
    if seed < 1:
        raise ValueError(f"KnowPrompt's sets compound the shuffles of seeds 1..seed: seed must be >= 1, got {seed}")
    positions_by_label = _positions_by_label(instances, label_map, k, allow_short)
    order = list(range(len(instances)))
    for s in range(1, seed + 1):
        # The legacy generator: what np.random.seed + np.random.shuffle use, stable across numpy releases.
        np.random.RandomState(s).shuffle(order)
    first_k: dict[str, list[int]] = {}
    for position in order:
        taken = first_k.setdefault(instances[position].relation, [])
        if len(taken) < k:
            taken.append(position)
    chosen = [p for positions in first_k.values() for p in positions]
    return _sample(instances, chosen, k, seed, positions_by_label, "knowprompt")


def sample_k_shot(
    instances: Sequence[RelationInstance], label_map: LabelMap, k: int, seed: int, allow_short: bool = False
) -> KShotSample:
    """K instances of each label, drawn without replacement from that label's instances.

    `allow_short` takes all of a smaller class instead of failing (a K-shot validation set:
    SemEval's val has a single `Entity-Destination(e2,e1)`).

    Each label has its own generator seeded by (K, seed, label), so one label's sample does
    not change when other labels, other seeds or the call order change.
    """
    positions_by_label = _positions_by_label(instances, label_map, k, allow_short)
    chosen: list[int] = []
    for label in label_map.labels:  # label-id order
        positions = positions_by_label[label]
        if positions:
            # A str seed is hashed with sha512: the same draw on every run and machine.
            rng = random.Random(f"cloce-kshot:{k}:{seed}:{label}")
            chosen.extend(sorted(rng.sample(positions, min(k, len(positions)))))
    return _sample(instances, chosen, k, seed, positions_by_label, "per_label")


def _positions_by_label(instances: Sequence[RelationInstance], label_map: LabelMap, k: int,
                        allow_short: bool) -> dict[str, list[int]]:
    """Each label's positions in the pool; fails on an unknown label, or a label smaller than K."""
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
    return positions_by_label


def _sample(instances, chosen: list[int], k: int, seed: int, positions_by_label: dict[str, list[int]],
            sampler: str) -> KShotSample:
    sample = tuple(instances[p] for p in chosen)
    return KShotSample(k=k, seed=seed, instances=sample, ids=tuple(i.id for i in sample),
                       empty_labels=tuple(label for label, ps in positions_by_label.items() if not ps), sampler=sampler)


def fixed_subset(instances: Sequence[RelationInstance], size: int | None,
                 name: str = "cloce-test-subset") -> list[RelationInstance]:
    """`size` instances drawn once for all runs (no run seed): every variant, K and seed of a
    study is tested (or validated) on the same sentences. None, or a size >= the pool, keeps
    all of them."""
    if size is None or size >= len(instances):
        return list(instances)
    chosen = sorted(random.Random(name).sample(range(len(instances)), size))
    return [instances[i] for i in chosen]
