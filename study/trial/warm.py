"""What a reused trial process keeps from one trial to the next (local mode: Tune reuses the
trial's process, `reuse_actors`): the data set it read, keyed by its content.

A key is the reader's arguments; a hit is checked against the size and modification time of
every file the data set was read from, so a file changed between trials is read again. The
backbone is not kept: in a reused process loading it again costs ~0.05-0.15 s (MiniLM, from
the page cache, imports done), and a fresh head's random initialisation must draw from the
trial's seeded generator exactly as an uncached load does (benchmarks/readings.md, 5c).
"""
from __future__ import annotations

import os
from pathlib import Path

from cloce.config import DataConfig
from cloce.data.dataset import DATA_DIR_ENV, Dataset, load_dataset
from study.datasets import is_bundled, unpacked_semeval

_datasets: dict[tuple, tuple[Dataset, tuple]] = {}


def _stamp(files: dict[str, str]) -> tuple:
    stamps = []
    for name, path in sorted(files.items()):
        try:
            stat = os.stat(path)
        except OSError:
            return ()  # gone: never equal to a recorded stamp
        stamps.append((name, str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    return tuple(stamps)


def dataset(data: DataConfig) -> Dataset:
    """`load_dataset` for `data`, read once per process while its files stay unchanged."""
    key = (data.data_dir, data.train, data.val, data.test, data.format, data.kshot_dir, os.environ.get(DATA_DIR_ENV))
    if is_bundled(data.data_dir):
        unpacked_semeval()  # a node the driver did not run on unpacks its own copy
    cached = _datasets.get(key)
    if cached is not None and cached[1] and _stamp(cached[0].files) == cached[1]:
        return cached[0]
    loaded = load_dataset(data.data_dir, train=data.train, val=data.val, test=data.test, fmt=data.format,
                          kshot_dir=data.kshot_dir)
    _datasets[key] = (loaded, _stamp(loaded.files))
    return loaded


def clear() -> None:
    _datasets.clear()
