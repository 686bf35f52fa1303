"""Where a run executes: device, threads, seeds, and the seam a distributed launcher fills in.

`cloce` never imports Ray: a launcher passes a `Runtime` whose hooks wrap the model and
loaders (e.g. `ray.train.torch.prepare_model`) and gathers per-worker results.
"""
from __future__ import annotations

import functools
import os
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        # Fail here, not with an obscure error at the first `.to()` (or a silent CPU run).
        raise ValueError(f"device {requested!r} asked for, but this torch ({torch.__version__}) sees no CUDA GPU; "
                         "use --device auto or cpu")
    return device


@functools.lru_cache(maxsize=None)
def bf16_native(device_type: str) -> bool:
    """Whether the device computes bf16 natively: there bf16 autocast is ~1.6x faster (CPU with
    AVX512-BF16, prompt_ki K=16 on one core); elsewhere it would be emulated, and slower."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def bf16_active(device: torch.device, asked: bool) -> bool:
    """Whether bf16 autocast really runs: asked for, on a device that computes bf16 natively.
    A run's numbers depend on it, not on the asking alone: a study records it per trial."""
    return bool(asked) and bf16_native(device.type)


def set_threads(num_threads: int | None) -> None:
    """All cores by default; a launcher running several workers on one machine passes its share."""
    torch.set_num_threads(num_threads or os.cpu_count() or 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _identity(x):
    return x


@dataclass
class Runtime:
    """The local single-process runtime; fields are the hooks a distributed launcher replaces.

    The training loader `prepare_loader` gets has a batch sampler giving this worker's share
    of every global batch (cloce.batching): it must keep it (Ray's `prepare_data_loader` with
    `add_dist_sampler=False`). `prepare_model` wraps for gradient averaging (DDP), which the
    loop's share weights assume."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    prepare_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    prepare_loader: Callable[[Any], Any] = _identity
    world_size: int = 1
    rank: int = 0

    def model_to_device(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.prepare_model is not None:
            return self.prepare_model(model)
        return model.to(self.device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def gather(self, obj: Any) -> list[Any]:
        """Every worker's `obj`, on every worker (the contrastive step needs all predictions)."""
        if self.world_size == 1 or not dist.is_initialized():
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def average_gradients(self, parameters) -> None:
        """What DistributedDataParallel does for the model's, for parameters outside it."""
        if self.world_size == 1 or not dist.is_initialized():
            return
        for parameter in parameters:
            if parameter.grad is not None:
                dist.all_reduce(parameter.grad)
                parameter.grad /= self.world_size


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper, for saving and evaluation."""
    return getattr(model, "module", model)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def compile_encoder(model: torch.nn.Module) -> None:
    """torch.compile a relation model's encoder in place (`Module.compile`: parameter names, so
    checkpoints, stay as they are); the heads and the contrastive step's embedding pass run eagerly."""
    encoder = model.mlm.base_model if hasattr(model, "mlm") else model.encoder
    encoder.compile(dynamic=True)


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast when asked for and the device computes bf16 natively; fp32 otherwise."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16_active(device, enabled))
