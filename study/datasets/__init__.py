"""The data set the main job runs on where none is given: SemEval-2010 Task 8, shipped inside the
package (semeval.tar.xz; SEMEVAL.md says where it comes from, its licence and each file's SHA-256),
unpacked once into a cache folder. `--data-dir`, `$CLOCE_DATA_DIR` and `../shared/datasets/semeval`
(cloce.data.dataset.default_data_dir) win when given or present."""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

ARCHIVE = Path(__file__).with_name("semeval.tar.xz")
FILES = ("train.txt", "val.txt", "test.txt", "rel2id.json")


@lru_cache(maxsize=1)
def bundled_semeval_dir() -> Path:
    """Where the bundled copy is (or will be) unpacked: named by the archive's hash, so another
    version of the package never reads a stale copy."""
    digest = hashlib.sha256(ARCHIVE.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cloce-study"
    return cache / f"semeval-{digest}"


def unpacked_semeval() -> Path:
    """The bundled SemEval as a folder (train.txt, val.txt, test.txt, rel2id.json), unpacked on first use."""
    target = bundled_semeval_dir()
    if all((target / name).is_file() for name in FILES):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".semeval-", dir=target.parent))
    try:
        with tarfile.open(ARCHIVE, "r:xz") as archive:
            for name in FILES:  # exactly these plain files: nothing else of the archive is written
                member = archive.getmember(name)
                if not member.isfile():
                    raise ValueError(f"{ARCHIVE}: {name} is not a plain file")
                (scratch / name).write_bytes(archive.extractfile(member).read())
        try:
            scratch.rename(target)  # atomic: two processes unpacking at once both end with a whole copy
        except OSError:
            if not all((target / name).is_file() for name in FILES):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def is_bundled(path: str | Path | None) -> bool:
    return path is not None and Path(path) == bundled_semeval_dir()


def default_study_data_dir() -> Path | None:
    """None where cloce's own default ($CLOCE_DATA_DIR, else ../shared/datasets/semeval beside a
    checkout) applies; the bundled copy where that default is not set or has no data."""
    from cloce.data.dataset import DATA_DIR_ENV, default_data_dir

    if os.environ.get(DATA_DIR_ENV):
        return None
    shared = default_data_dir()  # None in an installed copy: no checkout, no ../shared beside it
    if shared is not None and (shared / "train.txt").is_file():
        return None
    return unpacked_semeval()
