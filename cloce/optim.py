"""AdamW with the fused kernel wherever PyTorch has one for the parameters' device.

The default (for-loop) AdamW on CPU runs ~10 element-wise kernels per tensor; on MiniLM
(22.7M parameters, half of them the word-embedding matrix, updated in full each step) one
step took 247 ms against 31 ms fused (one thread), a quarter of a batch-16 training step.
The update is the same; only the float rounding differs.
"""
from __future__ import annotations

import torch


def adamw(param_groups: list[dict], lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    try:
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
