"""Taking and restoring the in-memory state a run continues from (weights, optimisers,
random generators, history); cloce/state.py stores it on disk."""
from __future__ import annotations

import copy
import random

import torch

from cloce.metrics import Evaluation
from cloce.records import EpochRecord
from cloce.state import TrainState


def take_state(history, best, model, optimizers, pair_rng: random.Random) -> TrainState:
    return TrainState(
        epoch=len(history),
        model=copy.deepcopy(model.state_dict()),
        best_model=best[2],
        best_epoch=best[1],
        best_val=best[3].to_dict(),
        optimizers={name: opt.state_dict() for name, opt in optimizers.items() if opt is not None},
        # No loader state: the training order is a function of (seed, epoch), see train_sampler.
        rng={"torch": torch.get_rng_state(), "pairs": pair_rng.getstate(), **cuda_rng_state()},
        history=[vars(r) for r in history],
    )


def restore_state(state: TrainState, model, optimizers, pair_rng: random.Random):
    model.load_state_dict(state.model)
    for name, opt in optimizers.items():
        if opt is not None and state.optimizers:  # none: taken after the last epoch (cloce.state.final_state)
            opt.load_state_dict(state.optimizers[name])
    torch.set_rng_state(state.rng["torch"])
    restore_cuda_rng_state(state.rng)
    # Older checkpoints also hold rng["shuffle"], a loader generator no longer used: ignored.
    pair_rng.setstate(_as_tuples(state.rng["pairs"]))
    history = [EpochRecord(**r) for r in state.history]
    best = (state.best_val["micro_f1"], state.best_epoch, state.best_model, Evaluation.from_dict(state.best_val))
    return history, best


def cuda_rng_state() -> dict:
    """The CUDA generators (dropout on a GPU draws from them), one per visible device."""
    return {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}


def restore_cuda_rng_state(rng: dict) -> None:
    """A checkpoint saved where CUDA was absent, or before the CUDA generators were saved, holds
    none: then they stay as seeded, and a resumed GPU run's dropout differs from an uninterrupted one."""
    if "cuda" in rng and torch.cuda.is_available():
        states = list(rng["cuda"])[: torch.cuda.device_count()]
        for device, generator_state in enumerate(states):
            torch.cuda.set_rng_state(generator_state, device)


def _as_tuples(value):
    """random.Random.setstate wants the tuples JSON turned into lists back."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
