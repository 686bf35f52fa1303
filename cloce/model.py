"""The two relation classifiers. Both take a padded batch and return class logits.

`forward(batch, output=...)` also returns the sentence vectors of the contrastive step, so
that a DistributedDataParallel wrapper sees every pass that needs gradients synchronised.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Literal

import torch
from torch import nn

from cloce.mlm_head import MlmHead, mlm_logits

Output = Literal["logits", "mask_vector", "mask_mean", "embedding_mean"]


def encoder_inputs(module: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch's inputs `module` takes: DistilBERT's and ModernBERT's take no token types."""
    keys = ("input_ids", "attention_mask", "token_type_ids")
    accepted = _forward_parameters(type(module))
    return {k: batch[k] for k in keys if k in batch and k in accepted}


@lru_cache(maxsize=None)
def _forward_parameters(module_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(module_class.forward).parameters)


def _masked_mean(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    weights = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _at(states: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    return states[torch.arange(states.size(0), device=states.device), positions]


class PromptRelationModel(nn.Module):
    """Encoder state at [MASK] -> MLM head transform -> scores of the soft-label tokens only.

    The label tokens are rows of the (tied) word-embedding matrix, so the score is an MLM
    decoder restricted to them: dot product with each label embedding plus its bias.
    """

    def __init__(self, mlm: nn.Module, head: MlmHead | str, label_token_ids: list[int]):
        super().__init__()
        self.mlm = mlm
        self.head = MlmHead((head,)) if isinstance(head, str) else head  # names only: see MlmHead
        self.register_buffer("label_token_ids", torch.tensor(label_token_ids, dtype=torch.long), persistent=False)

    @property
    def head_name(self) -> str:
        """The head's one child, where it is one (see LoadedMaskedLM.head_name)."""
        if len(self.head.parts) != 1:
            raise ValueError(f"the MLM head is {self.head.parts}, not one child: use cloce.mlm_head.mlm_logits")
        return self.head.parts[0]

    @property
    def embeddings(self) -> nn.Module:
        return self.mlm.base_model.embeddings

    def embedding_parameters(self) -> list[nn.Parameter]:
        return list(self.embeddings.parameters())

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.mlm.base_model.parameters())

    def forward(self, batch: dict[str, torch.Tensor], output: Output = "logits") -> torch.Tensor:
        if output == "embedding_mean":
            inputs = encoder_inputs(self.embeddings, batch)
            states = self.embeddings(**inputs)
            return _masked_mean(states, batch["attention_mask"])
        states = self.mlm.base_model(**encoder_inputs(self.mlm.base_model, batch)).last_hidden_state
        if output == "mask_mean":
            return _masked_mean(states, batch["attention_mask"])
        at_mask = _at(states, batch["anchors"][:, 0])
        if output == "mask_vector":
            return at_mask
        vocab_logits = mlm_logits(self.mlm, self.head, at_mask)
        return vocab_logits.index_select(-1, self.label_token_ids)


class MarkerRelationModel(nn.Module):
    """Fine-tuning baseline: [head marker; tail marker] hidden states -> dropout -> linear."""

    def __init__(self, encoder: nn.Module, n_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * hidden, n_labels)

    @property
    def embeddings(self) -> nn.Module:
        return self.encoder.embeddings

    def embedding_parameters(self) -> list[nn.Parameter]:
        return list(self.embeddings.parameters())

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def forward(self, batch: dict[str, torch.Tensor], output: Output = "logits") -> torch.Tensor:
        states = self.encoder(**encoder_inputs(self.encoder, batch)).last_hidden_state
        anchors = batch["anchors"]
        pair = torch.cat([_at(states, anchors[:, 0]), _at(states, anchors[:, 1])], dim=-1)
        if output != "logits":
            return pair
        return self.classifier(self.dropout(pair))
