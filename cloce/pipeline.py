"""Ties a variant's template and model to a backbone: the one place a variant becomes objects."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from cloce.backbone import FreshHeadInit, embedding_rows_from_names, load_encoder, load_masked_lm, resolve_model
from cloce.data.types import LabelMap, RelationInstance
from cloce.encoding import Encoded, Template, TokenizedInstance, load_word_tokenizer, tokenize_instances
from cloce.markers import EntityMarkerTemplate
from cloce.mlm_head import add_vocabulary_rows
from cloce.model import KnowPromptRelationModel, MarkerRelationModel, PromptRelationModel, PtrRelationModel
from cloce.prompt import PromptTemplate, PromptWording
from cloce.ptr import PtrRules, PtrTemplate, PtrVerbalizer
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
    vocab: VirtualVocab | None  # the soft-label variants only (prompt*, cloce_*, knowprompt)
    head_pretrained: bool  # the MLM head transform came from the checkpoint
    head_parts: tuple[str, ...] = ()  # the masked LM's children that make its head (prompt variants)
    type_names: tuple[str, ...] = ()  # the data's entity types (the generic one where it has none)
    ptr_rules: PtrRules | None = None  # ptr only: each relation's words
    base_vocab_size: int = 0  # ptr only: the backbone's vocabulary before its word rows were added

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
    ptr_rules: PtrRules | None = None,
    type_counts: dict | None = None,
    ke_weight: float = 0.0,
) -> RelationPipeline:
    """Pre-trained weights by default; a `backbone_config` builds the same thing randomly
    initialised (tests, and checkpoints that load their own weights afterwards).
    `fresh_head_init`, `sentence_markers`, `label_init` and `template` are the TrainConfig
    fields of those names; the marker head (finetune) reads none of them. `ptr_rules` (ptr),
    and `type_counts` and `ke_weight` (knowprompt): see cloce/ptr.py and cloce/knowprompt.py."""
    path = resolve_model(model_name)
    tokenizer = tokenizer or load_word_tokenizer(path)
    if variant.head == "marker":
        encoder = load_encoder(path, backbone_config)
        markers = EntityMarkerTemplate(tokenizer, use_types=variant.inject_types, max_seq_len=max_seq_len)
        model = MarkerRelationModel(encoder, len(label_map))
        return RelationPipeline(variant, path, tokenizer, markers, model, label_map, None, head_pretrained=False,
                                type_names=type_names)

    loaded = load_masked_lm(path, backbone_config, fresh_head_init)
    mlm = loaded.model
    base_size = mlm.get_input_embeddings().num_embeddings
    if variant.head == "ptr":
        return _ptr_pipeline(variant, path, tokenizer, loaded, label_map, type_names, max_seq_len, ptr_rules)
    if variant.head == "knowprompt":
        return _knowprompt_pipeline(variant, path, tokenizer, loaded, label_map, type_names, max_seq_len,
                                    type_counts, ke_weight)
    vocab = VirtualVocab(base_size, type_names, label_map.labels, label_init)
    init_rows = embedding_rows_from_names(mlm.get_input_embeddings(), tokenizer, vocab.readable_names())
    # Row ids stay exactly base_size + k; every pre-trained head weight stays as it was.
    add_vocabulary_rows(mlm, loaded.head, init_rows)
    prompt = PromptTemplate(tokenizer, vocab, use_types=variant.inject_types, max_seq_len=max_seq_len,
                            sentence_markers=sentence_markers, wording=template)
    model = PromptRelationModel(mlm, loaded.head, vocab.label_ids)
    return RelationPipeline(variant, path, tokenizer, prompt, model, label_map, vocab, loaded.head_pretrained,
                            head_parts=loaded.head.parts, type_names=type_names)


def _ptr_pipeline(variant, path, tokenizer, loaded, label_map, type_names, max_seq_len, rules) -> RelationPipeline:
    if rules is None:
        raise ValueError("the ptr variant needs its rules (cloce.ptr.derive_rules or a rules file)")
    mlm = loaded.model
    base_size = mlm.get_input_embeddings().num_embeddings
    verbalizer = PtrVerbalizer.build(rules, tokenizer, base_size)
    if verbalizer.extra_words:
        add_vocabulary_rows(mlm, loaded.head, embedding_rows_from_names(mlm.get_input_embeddings(), tokenizer,
                                                                        list(verbalizer.extra_words)))
    model = PtrRelationModel(mlm, loaded.head, verbalizer.rows, verbalizer.label_word)
    return RelationPipeline(variant, path, tokenizer, PtrTemplate(tokenizer, rules, max_seq_len), model, label_map,
                            None, loaded.head_pretrained, head_parts=loaded.head.parts, type_names=type_names,
                            ptr_rules=rules, base_vocab_size=base_size)


def _knowprompt_pipeline(variant, path, tokenizer, loaded, label_map, type_names, max_seq_len, type_counts,
                         ke_weight) -> RelationPipeline:
    from cloce.knowprompt import TYPE_WORDS, KnowPromptTemplate, type_prior_rows

    mlm = loaded.model
    embeddings = mlm.get_input_embeddings()
    vocab = VirtualVocab(embeddings.num_embeddings, TYPE_WORDS, label_map.labels)
    answer_rows = embedding_rows_from_names(embeddings, tokenizer, vocab.readable_names()[len(TYPE_WORDS):])
    type_rows = type_prior_rows(embeddings, tokenizer, type_counts).to(answer_rows.dtype)
    add_vocabulary_rows(mlm, loaded.head, torch.cat([type_rows, answer_rows]))
    sub_id, obj_id = (vocab.type_id(word) for word in TYPE_WORDS)
    template = KnowPromptTemplate(tokenizer, sub_id, obj_id, max_seq_len)
    model = KnowPromptRelationModel(mlm, loaded.head, vocab.label_ids, ke_weight)
    return RelationPipeline(variant, path, tokenizer, template, model, label_map, vocab, loaded.head_pretrained,
                            head_parts=loaded.head.parts, type_names=type_names)

