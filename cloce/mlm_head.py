"""The masked-LM head of any Hugging Face masked LM: where it is, how to call it, and how
to give it the virtual tokens' rows without touching a pre-trained weight.

The head is found through the library's public structure: the output embeddings
(`get_output_embeddings()`) sit inside the family's head module (`cls` of BERT, `lm_head` of
RoBERTa, `predictions` of ALBERT, `lm_predictions` of DeBERTa-v3), which maps a hidden
state to vocabulary logits. Three families spread their head over several children of the
model; their forward is spelled out in HEAD_PARTS, the order the library applies them in.

Interface (used by the prompt model, MLM adaptation and any variant that scores the
vocabulary at [MASK]): `find_mlm_head(model) -> MlmHead`, then
`mlm_logits(model, head, states)` or `head.modules(model)`.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from torch import nn

# Families whose head is several children of the model, in the order their forward applies them.
HEAD_PARTS = {
    "electra": ("generator_predictions", "generator_lm_head"),
    "distilbert": ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),
    "modernbert": ("head", "decoder"),
}


class UnsupportedBackbone(ValueError):
    """The checkpoint's family has no masked-LM head the prompt variants can score with."""


@dataclass(frozen=True)
class MlmHead:
    """Names of the model's children that make its MLM head, applied in order to a hidden state.

    Kept as names, not modules: a module registered a second time (in PromptRelationModel)
    would duplicate its weights in every checkpoint.
    """

    parts: tuple[str, ...]
    takes_word_embeddings: bool = False  # DeBERTa-v3's head: forward(states, word_embeddings)

    def modules(self, model: nn.Module) -> list[nn.Module]:
        return [model.get_submodule(name) for name in self.parts]

    def parameters(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The head's own parameters by their name in `model`, without the word embeddings it may share."""
        shared = model.get_input_embeddings().weight
        return {
            f"{part}.{name}": p
            for part, module in zip(self.parts, self.modules(model))
            for name, p in module.named_parameters()
            if p is not shared
        }


def find_mlm_head(model: nn.Module) -> MlmHead:
    model_type = getattr(model.config, "model_type", "")
    if model_type in HEAD_PARTS:
        return MlmHead(HEAD_PARTS[model_type])
    decoder = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if decoder is None:
        raise UnsupportedBackbone(
            f"{type(model).__name__} has no output embeddings (get_output_embeddings() is None): "
            "the prompt variants need a masked-LM head to score the soft labels at [MASK]")
    path = next(name for name, module in model.named_modules() if module is decoder)
    top = path.split(".")[0]
    if top == path:  # the decoder itself is a child: the transform before it is in the model's forward
        raise UnsupportedBackbone(
            f"{type(model).__name__}: its decoder {path!r} is a direct child of the model, so the head's "
            f"transform cannot be told apart; add the family's parts to cloce.mlm_head.HEAD_PARTS")
    head = model.get_submodule(top)
    takes_embeddings = "word_embeddings" in inspect.signature(head.forward).parameters
    return MlmHead((top,), takes_word_embeddings=takes_embeddings)


def mlm_logits(model: nn.Module, head: MlmHead, states: torch.Tensor) -> torch.Tensor:
    """Vocabulary logits of hidden `states` (any leading shape), as the model's own forward makes them."""
    for module in head.modules(model):
        states = module(states, model.get_input_embeddings()) if head.takes_word_embeddings else module(states)
    return states


def transform_dense(model: nn.Module, head: MlmHead) -> nn.Linear:
    """The head's first dense layer: the one that reads the hidden state."""
    hidden, vocab = model.config.hidden_size, model.config.vocab_size
    for module in head.modules(model):
        for layer in module.modules():
            # Not the decoder (DeBERTa-v3's get_output_embeddings() names this very dense layer).
            if isinstance(layer, nn.Linear) and layer.in_features == hidden and layer.out_features != vocab:
                return layer
    raise UnsupportedBackbone(f"{type(model).__name__}: no dense layer reads the hidden state in its MLM head {head.parts}")


def identity_transform(model: nn.Module, head: MlmHead) -> None:
    """Start a fresh MLM head transform (dense -> activation -> LayerNorm) as the identity on
    its dense layer: the [MASK] state reaches the label scores as the encoder made it, not
    through a random rotation, so the soft labels' name initialisation means something from
    step one. Paired few-shot runs (prompt_ki, K=8, seeds 1-5, MiniLM): test micro-F1 26.2
    vs 23.7 with the random init, better on 4 of 5 seeds
    (experiments/results/prompt_head_probe.jsonl). Where the head maps the hidden size to a
    different embedding size (ALBERT, ELECTRA), it starts as the rectangular identity
    (`nn.init.eye_`): as many coordinates pass through unchanged as both sizes have."""
    dense = transform_dense(model, head)
    with torch.no_grad():
        nn.init.eye_(dense.weight)
        if dense.bias is not None:
            dense.bias.zero_()


def add_vocabulary_rows(model: nn.Module, head: MlmHead, rows: torch.Tensor) -> None:
    """Append `rows` to the word embeddings and grow the head with them: a decoder tied to the
    embeddings stays tied, a vocabulary bias gets zeros, an untied decoder gets `rows` too.
    Every other weight, and every pre-trained row, is left as it was (not so with
    `resize_token_embeddings`, which resizes whatever `get_output_embeddings()` names: on
    DeBERTa-v3 the head's dense layer)."""
    old = model.get_input_embeddings()
    base = old.num_embeddings
    new = nn.Embedding(base + len(rows), old.embedding_dim, padding_idx=old.padding_idx,
                       device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        # resize_token_embeddings, which this replaces, drew the new matrix twice (nn.Embedding,
        # then _init_weights): draw it once more, so that every later draw of the seeded
        # generator (dropout) is what it was, and the recorded numbers hold.
        new.weight.normal_()
        new.weight[:base] = old.weight
        new.weight[base:] = rows.to(new.weight)
    grown: dict[int, nn.Parameter] = {id(old.weight): new.weight}
    for module in [m for part in head.modules(model) for m in part.modules()]:
        for name, param in list(module.named_parameters(recurse=False)):
            if id(param) not in grown and param.dim() in (1, 2) and param.shape[0] == base:
                extra = torch.zeros(len(rows), device=param.device, dtype=param.dtype) if param.dim() == 1 else rows
                grown[id(param)] = nn.Parameter(torch.cat([param.detach(), extra.to(param)]),
                                                requires_grad=param.requires_grad)
            if id(param) in grown:
                setattr(module, name, grown[id(param)])  # shared parameters (BERT's bias) stay shared
        if isinstance(module, nn.Linear) and module.weight.shape[0] != module.out_features:
            module.out_features = module.weight.shape[0]
    model.set_input_embeddings(new)
    model.config.vocab_size = new.num_embeddings
    if model.config.get_text_config() is not model.config:
        model.config.get_text_config().vocab_size = new.num_embeddings
