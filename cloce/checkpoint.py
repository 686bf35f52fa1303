"""Checkpoints: safetensors weights + JSON config + tokenizer files + label map.

Loading never unpickles anything: weights come from safetensors, everything else is JSON
(tokenizer.json included), so a checkpoint from elsewhere cannot run code on load.
"""
from __future__ import annotations

import json
from pathlib import Path

from cloce.data.types import LabelMap
from cloce.pipeline import RelationPipeline, build_pipeline
from cloce.ptr import PtrRules
from cloce.variants import get_variant

WEIGHTS = "model.safetensors"
CONFIG = "cloce_checkpoint.json"
BACKBONE_DIR = "backbone"
TOKENIZER_DIR = "tokenizer"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    pass


def backbone_config(pipeline: RelationPipeline):
    model = pipeline.model
    return model.mlm.config if hasattr(model, "mlm") else model.encoder.config


def save_checkpoint(pipeline: RelationPipeline, directory: str | Path, extra: dict | None = None) -> Path:
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_model(pipeline.model, str(directory / WEIGHTS))  # drops the tied duplicates safely
    config = backbone_config(pipeline)
    base_vocab = pipeline.vocab.base_size if pipeline.vocab else (pipeline.base_vocab_size or config.vocab_size)
    # Saved at its pre-trained size: loading rebuilds the virtual rows exactly as training did.
    config_dict = config.to_dict() | {"vocab_size": base_vocab}
    (directory / BACKBONE_DIR).mkdir(exist_ok=True)
    (directory / BACKBONE_DIR / "config.json").write_text(json.dumps(config_dict, indent=2))
    pipeline.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))
    meta = {
        "format_version": FORMAT_VERSION,
        "variant": pipeline.variant.name,
        "model_name": pipeline.model_name,
        "label_map": pipeline.label_map.to_json(),
        "type_names": list(pipeline.type_names),
        **({"ptr_rules": pipeline.ptr_rules.to_json()} if pipeline.ptr_rules else {}),
        "max_seq_len": _max_seq_len(pipeline),
        "head_pretrained": pipeline.head_pretrained,
        "sentence_markers": pipeline.sentence_markers,
        "template": getattr(pipeline.template, "wording", "relation_of"),
        "label_init": pipeline.vocab.label_init if pipeline.vocab else "name",
        "extra": extra or {},
    }
    (directory / CONFIG).write_text(json.dumps(meta, indent=2))
    return directory


def load_checkpoint(directory: str | Path) -> RelationPipeline:
    from safetensors import SafetensorError
    from safetensors.torch import load_model
    from transformers import AutoConfig

    from cloce.encoding import load_word_tokenizer

    directory = Path(directory)
    meta = _read_json(directory / CONFIG)
    for name in (WEIGHTS, f"{BACKBONE_DIR}/config.json", TOKENIZER_DIR):
        if not (directory / name).exists():
            raise CheckpointError(f"{directory / name}: missing from the checkpoint")
    try:
        variant = get_variant(meta["variant"])
        label_map = LabelMap.from_json(meta["label_map"])
        type_names = tuple(meta["type_names"])
        max_seq_len = int(meta["max_seq_len"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / CONFIG}: invalid checkpoint config ({err})") from None
    config = AutoConfig.from_pretrained(str(directory / BACKBONE_DIR))
    tokenizer = load_word_tokenizer(str(directory / TOKENIZER_DIR))
    pipeline = build_pipeline(
        variant, label_map, type_names, meta.get("model_name"), max_seq_len, backbone_config=config, tokenizer=tokenizer,
        # Absent from checkpoints saved before these options: the defaults they were trained with.
        sentence_markers=bool(meta.get("sentence_markers", False)),
        template=meta.get("template", "relation_of"), label_init=meta.get("label_init", "name"),
        ptr_rules=PtrRules.from_json(meta["ptr_rules"]) if "ptr_rules" in meta else None,
    )
    pipeline.head_pretrained = bool(meta.get("head_pretrained", False))
    try:
        load_model(pipeline.model, str(directory / WEIGHTS), strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise CheckpointError(f"{directory / WEIGHTS}: cannot load weights ({err})") from None
    pipeline.model.eval()
    return pipeline


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not found; is this a cloce checkpoint directory?") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}, line {err.lineno}: malformed JSON ({err.msg})") from None


def _max_seq_len(pipeline: RelationPipeline) -> int:
    return pipeline.template.max_seq_len
