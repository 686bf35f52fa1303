"""The loop's optimisers: AdamW for cross-entropy, the contrastive step's own, the learning-rate
schedule. AdamW takes the fused kernel wherever PyTorch has one for the parameters' device.

The default (for-loop) AdamW on CPU runs ~10 element-wise kernels per tensor; on MiniLM
(22.7M parameters, half of them the word-embedding matrix, updated in full each step) one
step took 247 ms against 31 ms fused (one thread), a quarter of a batch-16 training step.
The update is the same; only the float rounding differs.
"""
from __future__ import annotations

import torch
from torch import nn

from cloce.losses import BoundedMargin


def adamw(param_groups: list[dict], lr: float, weight_decay: float = 0.0) -> torch.optim.AdamW:
    try:
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)


def model_adamw(model: nn.Module, lr: float, weight_decay: float, word_lr: float | None = None) -> torch.optim.AdamW:
    """AdamW over a model's trainable parameters: no weight decay on biases, LayerNorm weights
    and embedding rows (they include the soft labels). `word_lr`: the word-embedding matrix
    (which holds the virtual words, and is the tied decoder) in a group of its own at that lr."""
    words = model.embeddings.word_embeddings.weight if word_lr is not None else None
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad or param is words:
            continue
        exempt = param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name or "embeddings" in name
        (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if words is not None:
        groups.append({"params": [words], "weight_decay": 0.0, "lr": word_lr})
    return adamw(groups, lr)


def contrastive_optimizer(model: nn.Module, kind: str, lr: float, margin: BoundedMargin | None):
    """CLoCE-S: the embedding layer (incl. virtual tokens) only; CLoCE-D: embedding + encoder."""
    if kind == "none":
        return None
    params = model.embedding_parameters() if kind == "embedding" else model.encoder_parameters()
    groups = [{"params": params}]
    if margin is not None:
        groups.append({"params": list(margin.parameters())})
    return adamw(groups, lr, weight_decay=0.0)


def linear_warmup_decay(optimizer, total_steps: int, warmup_ratio: float):
    warmup = int(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
