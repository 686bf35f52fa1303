"""The relation classifiers. Each takes a padded batch and returns class logits.

`forward(batch, output=...)` also returns the sentence vectors of the contrastive step, and
("with_aux_loss") the logits with the variant's own extra training objective (PTR's per-mask
word losses, KnowPrompt's KE term; None for the others), so that a DistributedDataParallel
wrapper sees every pass that needs gradients synchronised.
"""
from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from cloce.mlm_head import MlmHead, mlm_logits

Output = Literal["logits", "with_aux_loss", "mask_vector", "mask_mean", "embedding_mean"]


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


class MaskedLmModel(nn.Module):
    """What the masked-LM classifiers share: the masked LM, its head, and the parameter sets
    the contrastive step trains."""

    def __init__(self, mlm: nn.Module, head: MlmHead | str):
        super().__init__()
        self.mlm = mlm
        self.head = MlmHead((head,)) if isinstance(head, str) else head  # names only: see MlmHead

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


class PromptRelationModel(MaskedLmModel):
    """Encoder state at [MASK] -> MLM head transform -> scores of the soft-label tokens only.

    The label tokens are rows of the (tied) word-embedding matrix, so the score is an MLM
    decoder restricted to them: dot product with each label embedding plus its bias.
    """

    def __init__(self, mlm: nn.Module, head: MlmHead | str, label_token_ids: list[int]):
        super().__init__(mlm, head)
        self.register_buffer("label_token_ids", torch.tensor(label_token_ids, dtype=torch.long), persistent=False)

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
        logits = vocab_logits.index_select(-1, self.label_token_ids)
        if output == "with_aux_loss":
            return logits, self.aux_loss(batch, states, at_mask)
        return logits

    def aux_loss(self, batch: dict[str, torch.Tensor], states: torch.Tensor, at_mask: torch.Tensor) -> torch.Tensor | None:
        return None


class KnowPromptRelationModel(PromptRelationModel):
    """The prompt model (virtual answer words scored at [MASK]) plus KnowPrompt's KE term,
    weighted `ke_weight` (cloce/knowprompt.py). Negative spans depend on (instance, epoch):
    `epoch` is set by the training loop."""

    def __init__(self, mlm: nn.Module, head: MlmHead | str, label_token_ids: list[int], ke_weight: float):
        super().__init__(mlm, head, label_token_ids)
        self.ke_weight = ke_weight
        self.epoch = 0

    def aux_loss(self, batch, states, at_mask):
        from cloce.knowprompt import corrupted_spans, ke_distance, ke_loss, span_means

        if not self.ke_weight:
            return None
        anchors = batch["anchors"]
        s = span_means(states, anchors[:, 1], anchors[:, 2])
        o = span_means(states, anchors[:, 3], anchors[:, 4])
        lengths = batch["attention_mask"].sum(1).tolist()
        wrong = corrupted_spans(lengths, batch["index"].tolist(), self.epoch).to(states.device)
        s_neg, o_neg = span_means(states, wrong[:, 0], wrong[:, 1]), span_means(states, wrong[:, 2], wrong[:, 3])
        positive = ke_distance(s.float(), at_mask.float(), o.float())
        negative = ke_distance(s_neg.float(), at_mask.float(), o_neg.float())
        return self.ke_weight * ke_loss(positive, negative)


class PtrRelationModel(MaskedLmModel):
    """PTR: the MLM head at each of the prompt's [MASK]s; a class scores the sum over the masks
    of the log-probability of its word there, among that mask's candidate words; trained
    with the cross-entropy over classes plus the mean over masks of each mask's cross-entropy
    over its candidates (PTR's loss)."""

    def __init__(self, mlm: nn.Module, head: MlmHead | str, rows: tuple[tuple[int, ...], ...],
                 label_word: tuple[tuple[int, ...], ...]):
        super().__init__(mlm, head)
        for mask, mask_rows in enumerate(rows):
            self.register_buffer(f"rows_{mask}", torch.tensor(mask_rows, dtype=torch.long), persistent=False)
        self.n_masks = len(rows)
        # label_word[label][mask]: that label's word among mask's candidates
        self.register_buffer("label_word", torch.tensor(label_word, dtype=torch.long), persistent=False)

    def mask_log_probs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Per mask: [batch, candidates] log-probabilities of its candidate words."""
        states = self.mlm.base_model(**encoder_inputs(self.mlm.base_model, batch)).last_hidden_state
        rows = torch.arange(states.size(0), device=states.device)[:, None]
        at_masks = states[rows, batch["anchors"]]  # [batch, masks, hidden]
        vocab_logits = mlm_logits(self.mlm, self.head, at_masks)
        return [vocab_logits[:, mask].index_select(-1, getattr(self, f"rows_{mask}")).float().log_softmax(-1)
                for mask in range(self.n_masks)]

    def class_scores(self, log_probs: list[torch.Tensor]) -> torch.Tensor:
        """[batch, labels]: Σ_mask log p(the label's word at that mask)."""
        return sum(lp[:, self.label_word[:, mask]] for mask, lp in enumerate(log_probs))

    def forward(self, batch: dict[str, torch.Tensor], output: Output = "logits"):
        if output not in ("logits", "with_aux_loss"):
            raise ValueError(f"PTR has no contrastive step: no {output!r} output")
        log_probs = self.mask_log_probs(batch)
        scores = self.class_scores(log_probs)
        if output == "logits":
            return scores
        gold = self.label_word[batch["labels"]]  # [batch, masks]
        per_mask = [F.nll_loss(lp, gold[:, mask]) for mask, lp in enumerate(log_probs)]
        return scores, torch.stack(per_mask).mean()


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
        if output not in ("logits", "with_aux_loss"):
            return pair
        logits = self.classifier(self.dropout(pair))
        return (logits, None) if output == "with_aux_loss" else logits
