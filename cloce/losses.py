"""The contrastive margin loss of CLoCE, on cosine distance."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(a, b, dim=-1)


def contrastive_margin_loss(
    s_i: torch.Tensor, s_j: torch.Tensor, y: torch.Tensor, margin: torch.Tensor | float
) -> torch.Tensor:
    """L = 1/M * sum[(1 - y) * D^2 + y * 1/2 * max(0, m - D)^2], D = 1 - cos(S_i, S_j).

    y = 0 pulls a pair together (positive), y = 1 pushes it at least `margin` apart.
    """
    distance = cosine_distance(s_i, s_j)
    y = y.to(distance.dtype)
    pull = (1.0 - y) * distance.pow(2)
    push = y * 0.5 * torch.clamp(margin - distance, min=0.0).pow(2)
    return (pull + push).mean()


class BoundedMargin(nn.Module):
    """A trainable margin kept inside [low, high].

    The paper calls m trainable; trained on this loss alone an unbounded m only shrinks
    (a smaller m means a smaller push term), so it drifts to 0. A sigmoid keeps it in range.
    """

    def __init__(self, initial: float, low: float = 0.05, high: float = 1.0):
        super().__init__()
        if not low < initial < high:
            raise ValueError(f"initial margin {initial} must lie strictly inside ({low}, {high})")
        self.low, self.high = low, high
        fraction = (initial - low) / (high - low)
        self.logit = nn.Parameter(torch.logit(torch.tensor(fraction, dtype=torch.float32)))

    def forward(self) -> torch.Tensor:
        return self.low + (self.high - self.low) * torch.sigmoid(self.logit)
