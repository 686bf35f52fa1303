"""Everything needed to continue a run after epoch N exactly as if it had not stopped.

Stored as safetensors (every tensor: weights, optimiser moments, RNG states) plus JSON
(the structure around them, history, best epoch): resuming never unpickles anything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TENSORS = "train_state.safetensors"
STRUCTURE = "train_state.json"
SAME_AS_MODEL = "same_as_model"


@dataclass
class TrainState:
    epoch: int  # the last finished epoch
    model: dict[str, torch.Tensor]
    best_model: dict[str, torch.Tensor]
    best_epoch: int
    best_val: dict  # Evaluation.to_dict()
    optimizers: dict[str, Any]  # state dicts: ce, scheduler, cl, margin
    rng: dict[str, Any]  # torch, pair generator, CUDA (where present); older checkpoints: also the loader's, unused
    history: list[dict]


def save_train_state(state: TrainState, directory: str | Path) -> Path:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = {
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val": state.best_val,
        "history": state.history,
        "model": _flatten(state.model, "model", tensors),
        # Most epochs of a short run are the best so far: then the best weights are the
        # current ones, and the checkpoint (written every epoch) need not hold them twice.
        "best_model": SAME_AS_MODEL if state.best_epoch == state.epoch or state.best_model is state.model
        else _flatten(state.best_model, "best_model", tensors),
        "optimizers": _flatten(state.optimizers, "optimizers", tensors),
        "rng": _flatten(state.rng, "rng", tensors),
    }
    # Tied weights share storage; safetensors wants each tensor on its own.
    save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}, str(directory / TENSORS))
    (directory / STRUCTURE).write_text(json.dumps(skeleton))
    return directory


def final_state(state: TrainState) -> TrainState:
    """What resume needs once the last epoch is trained: the best weights, history and RNG
    states; no optimiser state and no last-epoch weights (nothing is trained again, and the
    test runs on the best weights). A third of a full checkpoint with fused AdamW."""
    return TrainState(epoch=state.epoch, model=state.best_model, best_model=state.best_model,
                      best_epoch=state.best_epoch, best_val=state.best_val, optimizers={}, rng=state.rng,
                      history=state.history)


class TrainStateError(ValueError):
    """A resume checkpoint that cannot be trusted: missing, truncated or not ours."""


def load_train_state(directory: str | Path) -> TrainState:
    """Reads safetensors + JSON only; a pickle in the directory is never opened."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    for name in (STRUCTURE, TENSORS):
        if not (directory / name).is_file():
            raise TrainStateError(f"{directory / name}: missing; not a cloce training checkpoint")
    try:
        skeleton = json.loads((directory / STRUCTURE).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TrainStateError(f"{directory / STRUCTURE}: not valid JSON ({err}); the checkpoint is damaged") from None
    try:
        tensors = load_file(str(directory / TENSORS))
    except (SafetensorError, OSError, ValueError) as err:
        raise TrainStateError(f"{directory / TENSORS}: cannot be read as safetensors ({err}); "
                              "the file is truncated or tampered with") from None
    try:
        return TrainState(
            epoch=skeleton["epoch"],
            model=_unflatten(skeleton["model"], tensors),
            best_model=_best_model(skeleton, tensors),
            best_epoch=skeleton["best_epoch"],
            best_val=skeleton["best_val"],
            optimizers=_unflatten(skeleton["optimizers"], tensors),
            rng=_unflatten(skeleton["rng"], tensors),
            history=skeleton["history"],
        )
    except (KeyError, TypeError) as err:
        raise TrainStateError(f"{directory}: {STRUCTURE} and {TENSORS} do not match (missing {err}); "
                              "the checkpoint is damaged or from elsewhere") from None


def _best_model(skeleton: dict, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if skeleton["best_model"] == SAME_AS_MODEL:
        return {name: tensor.clone() for name, tensor in _unflatten(skeleton["model"], tensors).items()}
    return _unflatten(skeleton["best_model"], tensors)


def has_train_state(directory: str | Path) -> bool:
    return (Path(directory) / STRUCTURE).exists() and (Path(directory) / TENSORS).exists()


def _flatten(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON with every tensor replaced by a reference into `tensors`."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, dict):
        # JSON keys are strings: remember int keys (optimiser state is keyed by param index).
        return {"__dict__": [[k, _flatten(v, f"{key}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__list__": [_flatten(v, f"{key}.{i}", tensors) for i, v in enumerate(value)], "tuple": isinstance(value, tuple)}
    return value


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict) and "__tensor__" in value:
        return tensors[value["__tensor__"]]
    if isinstance(value, dict) and "__dict__" in value:
        return {k: _unflatten(v, tensors) for k, v in value["__dict__"]}
    if isinstance(value, dict) and "__list__" in value:
        items = [_unflatten(v, tensors) for v in value["__list__"]]
        return tuple(items) if value["tuple"] else items
    return value
