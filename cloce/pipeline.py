"""Ties a variant's template and model to a backbone: the one place a variant becomes objects."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

from cloce.backbone import FreshHeadInit, embedding_rows_from_names, load_encoder, load_masked_lm, resolve_model
from cloce.data.types import LabelMap, RelationInstance
from cloce.encoding import Encoded, Template, TokenizedInstance, load_word_tokenizer, tokenize_instances
from cloce.markers import EntityMarkerTemplate
from cloce.mlm_head import add_vocabulary_rows
from cloce.model import MarkerRelationModel, PromptRelationModel
from cloce.prompt import PromptTemplate, PromptWording
from cloce.variants import Variant
from cloce.vocab import GENERIC_TYPE, LabelInit, VirtualVocab


@dataclass
class RelationPipeline:
    variant: Variant
    model_name: str
    tokenizer: object
    template: Template
    model: nn.Module
    label_map: LabelMap
    vocab: VirtualVocab | None  # prompt variants only
    head_pretrained: bool  # the MLM head transform came from the checkpoint
    head_parts: tuple[str, ...] = ()  # the masked LM's children that make its head (prompt variants)

    def tokenize(self, instances: Sequence[RelationInstance]) -> list[TokenizedInstance]:
        return tokenize_instances(instances, self.tokenizer, self.label_map)

    def encode(self, tokenized: Sequence[TokenizedInstance]) -> list[Encoded]:
        return [self.template.encode(t) for t in tokenized]

    @property
    def head_summary(self) -> str | None:
        """Which MLM head the prompt scores with, and whether the checkpoint stored it."""
        if not self.head_parts:
            return None
        kind = "pre-trained (stored in the checkpoint)" if self.head_pretrained else "fresh (the checkpoint stores none)"
        return f"MLM head {'+'.join(self.head_parts)}: {kind}"

    @property
    def sentence_markers(self) -> bool:
        """The prompt's sentence carries `@ head @ ... # tail #` (TrainConfig.sentence_markers,
        as decided; fine-tuning's own markers are not this option)."""
        return bool(getattr(self.template, "sentence_markers", False))


def type_vocabulary(instances: Sequence[RelationInstance]) -> tuple[str, ...]:
    """Entity types seen in the data, sorted; the generic type stands in for missing ones."""
    types = {m.type for inst in instances for m in (inst.head, inst.tail)}
    named = sorted(t for t in types if t is not None)
    return tuple(named + [GENERIC_TYPE]) if None in types or not named else tuple(named)


def build_pipeline(
    variant: Variant,
    label_map: LabelMap,
    type_names: tuple[str, ...],
    model_name: str | None = None,
    max_seq_len: int = 256,
    backbone_config=None,
    tokenizer=None,
    fresh_head_init: FreshHeadInit = "identity",
    sentence_markers: bool = False,
    label_init: LabelInit = "name",
    template: PromptWording = "relation_of",
) -> RelationPipeline:
    """Pre-trained weights by default; a `backbone_config` builds the same thing randomly
    initialised (tests, and checkpoints that load their own weights afterwards).
    `fresh_head_init`, `sentence_markers`, `label_init` and `template` are the TrainConfig
    fields of those names; the marker head (finetune) reads none of them."""
    path = resolve_model(model_name)
    tokenizer = tokenizer or load_word_tokenizer(path)
    if variant.head == "marker":
        encoder = load_encoder(path, backbone_config)
        markers = EntityMarkerTemplate(tokenizer, use_types=variant.inject_types, max_seq_len=max_seq_len)
        model = MarkerRelationModel(encoder, len(label_map))
        return RelationPipeline(variant, path, tokenizer, markers, model, label_map, None, head_pretrained=False)

    loaded = load_masked_lm(path, backbone_config, fresh_head_init)
    mlm = loaded.model
    base_size = mlm.get_input_embeddings().num_embeddings
    vocab = VirtualVocab(base_size, type_names, label_map.labels, label_init)
    init_rows = embedding_rows_from_names(mlm.get_input_embeddings(), tokenizer, vocab.readable_names())
    # Row ids stay exactly base_size + k; every pre-trained head weight stays as it was.
    add_vocabulary_rows(mlm, loaded.head, init_rows)
    prompt = PromptTemplate(tokenizer, vocab, use_types=variant.inject_types, max_seq_len=max_seq_len,
                            sentence_markers=sentence_markers, wording=template)
    model = PromptRelationModel(mlm, loaded.head, vocab.label_ids)
    return RelationPipeline(variant, path, tokenizer, prompt, model, label_map, vocab, loaded.head_pretrained,
                            head_parts=loaded.head.parts)
