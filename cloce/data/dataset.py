"""A data set's three splits and its label map, found in one folder or given file by file."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..checkout import is_this_checkout
from .readers import read_instances
from .types import DataError, LabelMap, RelationInstance

DATA_DIR_ENV = "CLOCE_DATA_DIR"
REL2ID_FILE = "rel2id.json"
SPLITS = ("train", "val", "test")
# The names the split files go by in the data sets we read, in the order we look for them.
SPLIT_FILE_NAMES = {
    "train": ("train.json", "train.jsonl", "train.txt"),
    "val": ("dev.json", "val.json", "dev.jsonl", "val.jsonl", "dev.txt", "val.txt"),
    "test": ("test.json", "test.jsonl", "test.txt"),
}
HOW_TO_POINT = (
    f"pass --data-dir DIR, or --train/--val/--test FILE, or set the {DATA_DIR_ENV} "
    "environment variable"
)


@dataclass(frozen=True)
class Dataset:
    train: tuple[RelationInstance, ...]
    val: tuple[RelationInstance, ...]
    test: tuple[RelationInstance, ...]
    label_map: LabelMap
    has_types: bool  # every train instance has head and tail entity types
    files: dict[str, str]  # split name (and "rel2id" when one was used) -> path read
    # Ready-made K-shot sets, `<kshot_dir>/<K>-<seed>/train.txt` (cloce/data/kshot_sets.py);
    # None: a sampler draws them from `train`.
    kshot_dir: str | None = None


def default_data_dir() -> Path | None:
    """$CLOCE_DATA_DIR, else the shared SemEval copy next to the repository when this code runs
    from a checkout of it; None for an installed copy, which has no repository beside it."""
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env)
    repo_root = Path(__file__).resolve().parents[2]  # .../<repo>/cloce/data/dataset.py
    if not is_this_checkout(repo_root):
        return None  # site-packages/../shared is nobody's data set
    return repo_root.parent / "shared" / "datasets" / "semeval"


def load_dataset(
    data_dir: str | Path | None = None,
    *,
    train: str | Path | None = None,
    val: str | Path | None = None,
    test: str | Path | None = None,
    fmt: str = "auto",
    kshot_dir: str | Path | None = None,
) -> Dataset:
    """Read train/val/test. Explicit files win over the folder; the folder defaults to
    default_data_dir() when some split is not given.

    The label map comes from rel2id.json (in the folder, or next to the train file when
    every split is given explicitly), else from the labels seen in all three splits.
    `kshot_dir`: a folder of ready-made K-shot sets, read per (K, seed) when a run starts.
    """
    if kshot_dir is not None and not Path(kshot_dir).expanduser().is_dir():
        raise DataError(kshot_dir, None, "K-shot folder not found: expected <dir>/<K>-<seed>/train.txt "
                                         "as KnowPrompt and DeepKE write it")
    explicit = {"train": train, "val": val, "test": test}
    folder = _folder_to_search(data_dir, explicit)
    paths = {
        split: _explicit_file(split, Path(given)) if given is not None else _find_split(folder, split)
        for split, given in explicit.items()
    }

    rel2id = (folder if folder is not None else paths["train"].parent) / REL2ID_FILE
    has_rel2id = rel2id.is_file()
    label_map = LabelMap.from_rel2id(rel2id) if has_rel2id else None
    splits = {split: read_instances(path, fmt, label_map) for split, path in paths.items()}
    if label_map is None:
        label_map = LabelMap.from_labels(i.relation for s in splits.values() for i in s)

    files = {split: str(path) for split, path in paths.items()}
    if has_rel2id:
        files["rel2id"] = str(rel2id)
    return Dataset(
        train=tuple(splits["train"]),
        val=tuple(splits["val"]),
        test=tuple(splits["test"]),
        label_map=label_map,
        has_types=all(i.head.type is not None and i.tail.type is not None for i in splits["train"]),
        files=files,
        kshot_dir=None if kshot_dir is None else str(Path(kshot_dir).expanduser()),
    )


def _folder_to_search(data_dir: str | Path | None, explicit: dict) -> Path | None:
    if data_dir is None and all(given is not None for given in explicit.values()):
        return None
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if folder is None:
        raise DataError("data directory", None, "none given, and this installed copy has no "
                        f"checkout's ../shared/datasets beside it; {HOW_TO_POINT}")
    if not folder.is_dir():
        raise DataError(folder, None, f"data directory not found (tried {folder}); {HOW_TO_POINT}")
    return folder


def _find_split(folder: Path, split: str) -> Path:
    for name in SPLIT_FILE_NAMES[split]:
        if (folder / name).is_file():
            return folder / name
    tried = ", ".join(SPLIT_FILE_NAMES[split])
    raise DataError(folder, None, f"no {split} file in {folder} (tried {tried}); {HOW_TO_POINT}")


def _explicit_file(split: str, path: Path) -> Path:
    if not path.is_file():
        raise DataError(path, None, f"{split} file not found (tried {path}); {HOW_TO_POINT}")
    return path
