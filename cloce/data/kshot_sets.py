"""Where a run's K-shot set comes from: drawn by a sampler (cloce/data/sampling.py), or
read from a ready-made folder (`Dataset.kshot_dir`).

Ready-made K-shot sets: a folder laid out as KnowPrompt and DeepKE write it,
`<dir>/<K>-<seed>/train.txt` (with its own val/test where present), read as the K-shot set
of that K and seed, so a run trains on the very files a paper used.

A sentence of the folder that is also in the full train file keeps that file's id
(`train:<line>`), so ids, kshot_ids.json and the per-sentence records mean the same
sentence whichever way the set was made; one that is not found there is named by the
folder file and its line.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from .dataset import SPLIT_FILE_NAMES, Dataset
from .readers import read_instances
from .sampling import KShotError, KShotSample, KShotSampler, draw_k_shot
from .types import LabelMap, RelationInstance


@dataclass(frozen=True)
class KShotSplits:
    sample: KShotSample
    val: tuple[RelationInstance, ...] | None  # a ready-made folder's own val; None: the data set's
    test: tuple[RelationInstance, ...] | None


def k_shot_splits(dataset: Dataset, k: int, seed: int, sampler: KShotSampler = "knowprompt") -> KShotSplits:
    """The data set's ready-made set of (K, seed) when it has a K-shot folder, else `sampler`'s draw."""
    if dataset.kshot_dir is not None:
        return read_kshot_folder(dataset.kshot_dir, k, seed, dataset.train, dataset.label_map)
    return KShotSplits(draw_k_shot(dataset.train, dataset.label_map, k, seed, sampler), None, None)


def kshot_subfolder(root: str | Path, k: int, seed: int) -> Path:
    folder = Path(root).expanduser() / f"{k}-{seed}"
    if not folder.is_dir():
        present = sorted(p.name for p in Path(root).expanduser().glob("*-*") if p.is_dir())
        raise KShotError(f"K-shot folder {folder} does not exist (K={k}, seed={seed}); "
                         f"{Path(root)} holds {', '.join(present) or 'no <K>-<seed> folder'}")
    return folder


def read_kshot_folder(root: str | Path, k: int, seed: int, full_train: Sequence[RelationInstance],
                      label_map: LabelMap, fmt: str = "auto") -> KShotSplits:
    folder = kshot_subfolder(root, k, seed)
    files = {split: _split_file(folder, split) for split in SPLIT_FILE_NAMES}
    if files["train"] is None:
        raise KShotError(f"K-shot folder {folder}: no train file ({' / '.join(SPLIT_FILE_NAMES['train'])})")
    full_ids = {_content_key(instance): instance.id for instance in full_train}
    train = tuple(_with_full_id(instance, full_ids, folder)
                  for instance in read_instances(files["train"], fmt, label_map))
    present = {i.relation for i in train}
    sample = KShotSample(k=k, seed=seed, instances=train, ids=tuple(i.id for i in train),
                         empty_labels=tuple(label for label in label_map.labels if label not in present),
                         sampler="folder", source=str(files["train"]))
    val, test = (tuple(read_instances(files[split], fmt, label_map)) if files[split] else None for split in ("val", "test"))
    return KShotSplits(sample, val, test)


def _split_file(folder: Path, split: str) -> Path | None:
    return next((folder / name for name in SPLIT_FILE_NAMES[split] if (folder / name).is_file()), None)


def _content_key(instance: RelationInstance) -> tuple:
    return instance.tokens, instance.head, instance.tail, instance.relation


def _with_full_id(instance: RelationInstance, full_ids: dict[tuple, str], folder: Path) -> RelationInstance:
    found = full_ids.get(_content_key(instance))
    return replace(instance, id=found if found is not None else f"{folder.name}/{instance.id}")
