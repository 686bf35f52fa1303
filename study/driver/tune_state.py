"""Whether a cell's saved Tune state can be restored. A driver killed while Tune copies its
state into the cell's directory leaves the files empty or cut short (seen in
tests/test_study_e2e.py: all three 0 bytes). `Tuner.restore` accepts such a directory and its
`fit` then fails every trial (the searcher comes back without its search space), so the cell
is checked first and, unreadable, set aside to start again."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

def state_files() -> tuple[tuple[str, object], ...]:
    """Tune's own state file names, from its classes (the newest of each is the one restored),
    and how Tune writes each: the controller's as JSON; the search
    generator's and the searcher's with cloudpickle (`_atomic_save`), whatever their suffix
    (the generator's file is named `.json`: read as JSON, every saved searcher looked cut
    short, and every resumed cell searched again, issue 25's SLURM resume)."""
    import ray.cloudpickle as cloudpickle
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.search.search_generator import SearchGenerator
    from ray.tune.search.searcher import Searcher

    return ((TuneController.CKPT_FILE_TMPL.format("*"), lambda data: json.loads(data.decode())),
            (SearchGenerator.CKPT_FILE_TMPL.format("*"), cloudpickle.loads),
            (Searcher.CKPT_FILE_TMPL.format("*"), cloudpickle.loads))


def unreadable_tune_state(cell_dir: str | Path) -> str | None:
    """The first of the newest state files that cannot be read back (its name and why), or
    None. Only a local directory is checked: elsewhere Tune's restore has the last word."""
    directory = Path(cell_dir)
    if "://" in str(cell_dir) or not directory.is_dir():
        return None
    for pattern, load in state_files():
        files = sorted(directory.glob(pattern))
        if not files:
            continue
        newest = files[-1]
        if newest.stat().st_size == 0:
            return f"{newest.name} is empty"
        try:
            load(newest.read_bytes())
        except Exception as err:  # a cut-short pickle raises anything from EOFError to UnpicklingError
            return f"{newest.name} is cut short ({type(err).__name__}: {err})"
    return None


def has_saved_state(cell_dir: str | Path) -> bool:
    """Whether Tune saved the cell's experiment state at least once. `Tuner.can_restore` only
    asks for `tuner.pkl`, written before the first trial; a driver killed before the first state
    save leaves that alone, and the restored controller then logs "Failed to restore the run
    state", goes on with a searcher that has no search space, and fails the cell (seen in the
    scale benchmark's resume check: 5 of 21 cells). Only a local directory is checked."""
    from ray.tune.execution.tune_controller import TuneController

    directory = Path(cell_dir)
    if "://" in str(cell_dir):
        return True
    return directory.is_dir() and any(directory.glob(TuneController.CKPT_FILE_TMPL.format("*")))


def set_aside(cell_dir: str | Path) -> Path:
    """Rename the cell's directory out of Tune's way. Its trials' results stay there to read;
    their checkpoints go (weights + optimiser state: nothing resumes from them now)."""
    directory = Path(cell_dir)
    aside = directory.with_name(f"{directory.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    directory.rename(aside)
    for checkpoint in [path for path in aside.glob("*/checkpoint_*") if path.is_dir()]:
        shutil.rmtree(checkpoint, ignore_errors=True)
    return aside
