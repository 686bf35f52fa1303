"""Opt-in options for SemEval's relation direction: soft labels started from the head's role
(label_init="role"), the `head is the [MASK] of tail` template (template="role_of"), and a
masked-LM adaptation of the head alone (mlm_adapt_head_only). Tiny random backbones."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from cloce.config import ConfigError, MlmAdaptConfig, TrainConfig
from cloce.data.types import LabelMap
from cloce.encoding import load_word_tokenizer
from cloce.pipeline import build_pipeline, type_vocabulary
from cloce.prompt import PromptTooLongError
from cloce.variants import get_variant
from cloce.vocab import VirtualVocab, readable_label_name, role_label_name
from tests.conftest import TINY_ROWS, make_instance

SEMEVAL_ROLES = {  # relation: (the head's role in (e1,e2), in (e2,e1))
    "Cause-Effect": ("cause", "effect"),
    "Component-Whole": ("component", "whole"),
    "Content-Container": ("content", "container"),
    "Entity-Destination": ("entity", "destination"),
    "Entity-Origin": ("entity", "origin"),
    "Instrument-Agency": ("instrument", "agency"),
    "Member-Collection": ("member", "collection"),
    "Message-Topic": ("message", "topic"),
    "Product-Producer": ("product", "producer"),
}
DIRECTED = [(f"{relation}(e1,e2)", forward) for relation, (forward, _) in SEMEVAL_ROLES.items()] + [
    (f"{relation}(e2,e1)", backward) for relation, (_, backward) in SEMEVAL_ROLES.items()
]
LABELS = LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"])
FIRE = make_instance("fire", "the fire caused smoke .", (1, 2), (3, 4), "Cause-Effect(e1,e2)")
TYPED = make_instance("typed", "john lives in paris .", (0, 1), (3, 4), "Other", "PERSON", "CITY")
SENTENCES = [tuple(text.split()) for text, *_ in TINY_ROWS]
QUICK = MlmAdaptConfig(steps=4, batch_size=4, max_length=32)


@pytest.fixture(scope="module")
def bert_tokenizer(bert_path):
    return load_word_tokenizer(bert_path)


@pytest.fixture(scope="module")
def build(bert_path, bert_tokenizer, tiny_bert_config):
    def build(variant="prompt_ki", instances=(FIRE,), max_seq_len=64, labels=LABELS, **options):
        return build_pipeline(get_variant(variant), labels, type_vocabulary(list(instances)), model_name=bert_path,
                              max_seq_len=max_seq_len, backbone_config=tiny_bert_config, tokenizer=bert_tokenizer,
                              **options)

    return build


def show(pipeline, ids):
    """Tokens as the tokenizer writes them; a virtual type token as `[T:<type>]`."""
    base = pipeline.vocab.base_size
    return [f"[T:{pipeline.vocab.type_names[i - base]}]" if i >= base else pipeline.tokenizer.convert_ids_to_tokens(i)
            for i in ids]


def encode_one(pipeline, instance):
    return pipeline.encode(pipeline.tokenize([instance]))[0]


# --- label_init="role" ----------------------------------------------------------------


@pytest.mark.parametrize("label, role", DIRECTED)
def test_a_directed_semeval_label_is_named_by_the_heads_role(label, role):
    assert role_label_name(label) == role


@pytest.mark.parametrize("label", ["Other", "no_relation", "per:founded_by", "org:country_of_headquarters", "USED-FOR"])
def test_a_label_without_direction_keeps_its_readable_name(label):
    assert role_label_name(label) == readable_label_name(label)


def test_the_two_directions_start_apart_under_role_and_equal_under_name(build, bert_tokenizer):
    def rows(pipeline):
        weights = pipeline.model.mlm.get_input_embeddings().weight.detach()
        return {label: weights[i] for label, i in zip(pipeline.vocab.label_names, pipeline.vocab.label_ids)}

    torch.manual_seed(0)
    by_name = rows(build(label_init="name"))
    torch.manual_seed(0)
    role_pipeline = build(label_init="role")
    by_role = rows(role_pipeline)

    assert torch.equal(by_name["Cause-Effect(e1,e2)"], by_name["Cause-Effect(e2,e1)"])
    assert not torch.allclose(by_role["Cause-Effect(e1,e2)"], by_role["Cause-Effect(e2,e1)"])
    torch.testing.assert_close(by_role["Other"], by_name["Other"])  # undirected: the same start
    assert role_pipeline.vocab.readable_names()[-2:] == ["cause", "effect"]


def test_the_virtual_vocab_json_keeps_label_init_and_reads_old_files():
    vocab = VirtualVocab(10, ("entity",), LABELS.labels, "role")
    assert VirtualVocab.from_json(vocab.to_json()) == vocab
    old = {"base_size": 10, "type_names": ["entity"], "label_names": list(LABELS.labels)}
    assert VirtualVocab.from_json(old).label_init == "name"


# --- template="role_of" ---------------------------------------------------------------


def test_role_of_asks_for_the_heads_role_with_types(build):
    pipeline = build("prompt_ki", [TYPED], template="role_of")
    encoded = encode_one(pipeline, TYPED)
    tokens = show(pipeline, encoded.input_ids)

    assert tokens == [
        "[CLS]", "john", "lives", "in", "paris", ".", "[SEP]",
        "[T:PERSON]", "john", "is", "the", "[MASK]", "of", "[T:CITY]", "paris", "[SEP]",
    ]
    assert encoded.anchors == (tokens.index("[MASK]"),)


def test_role_of_without_types_has_no_type_tokens(build):
    pipeline = build("prompt", [TYPED], template="role_of")
    encoded = encode_one(pipeline, TYPED)

    assert show(pipeline, encoded.input_ids)[6:] == ["[SEP]", "john", "is", "the", "[MASK]", "of", "paris", "[SEP]"]
    assert encoded.input_ids[encoded.anchors[0]] == pipeline.tokenizer.mask_token_id


def test_role_of_cuts_a_long_sentence_and_keeps_the_prompt_whole(build):
    words = ["word"] * 300
    words[150], words[155] = "fire", "smoke"
    long = make_instance("long", " ".join(words), (150, 151), (155, 156), "Cause-Effect(e1,e2)")
    pipeline = build("prompt_ki", [long], max_seq_len=32, template="role_of")
    encoded = encode_one(pipeline, long)
    tokens = show(pipeline, encoded.input_ids)

    assert len(tokens) == 32
    first_sep = tokens.index("[SEP]")
    assert {"fire", "smoke"} <= set(tokens[1:first_sep])
    assert tokens[first_sep + 1:] == ["[T:entity]", "fire", "is", "the", "[MASK]", "of", "[T:entity]", "smoke", "[SEP]"]
    assert tokens[encoded.anchors[0]] == "[MASK]"


def test_role_of_still_refuses_a_prompt_longer_than_max_seq_len(build):
    huge = make_instance("huge-entity-7", " ".join(["fire"] * 60) + " caused smoke", (0, 60), (61, 62), "Other")
    pipeline = build("prompt_ki", [huge], max_seq_len=64, template="role_of")
    with pytest.raises(PromptTooLongError, match="huge-entity-7"):
        encode_one(pipeline, huge)


def test_a_checkpoint_keeps_its_template_and_label_init(build, tmp_path):
    from cloce.checkpoint import load_checkpoint, save_checkpoint

    pipeline = build("prompt", [FIRE], template="role_of", label_init="role")
    loaded = load_checkpoint(save_checkpoint(pipeline, tmp_path / "ckpt"))
    assert loaded.template.wording == "role_of" and loaded.vocab.label_init == "role"
    assert encode_one(loaded, FIRE) == encode_one(pipeline, FIRE)


# --- mlm_adapt_head_only ----------------------------------------------------------------


def weights(directory) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(directory) / "model.safetensors"))


def test_head_only_adaptation_changes_the_head_and_no_encoder_weight(tiny_model_dir, tmp_path):
    from cloce.mlm_adapt import adapt_backbone

    config = MlmAdaptConfig(steps=4, batch_size=4, max_length=32, lr=1e-2, head_only=True)
    adapted = adapt_backbone(tiny_model_dir, SENTENCES, config, tmp_path)
    before, after = weights(tiny_model_dir), weights(adapted.path)

    encoder = [k for k in after if k.startswith("bert.")]
    assert encoder and all(torch.equal(after[k], before[k]) for k in encoder)
    assert not torch.equal(after["cls.predictions.transform.dense.weight"],
                           before["cls.predictions.transform.dense.weight"])
    assert adapted.info["config"]["head_only"] is True


def test_head_only_trains_the_heads_own_parameters_with_the_encoder_frozen(tiny_model_dir):
    from transformers import AutoTokenizer, DataCollatorForLanguageModeling

    from cloce.backbone import load_masked_lm
    from cloce.mlm_adapt import freeze_all_but_head, masked_lm_loss, tokenize_sentences

    loaded = load_masked_lm(tiny_model_dir)
    freeze_all_but_head(loaded.model, loaded.head_name)
    collator = DataCollatorForLanguageModeling(AutoTokenizer.from_pretrained(tiny_model_dir), mlm_probability=0.3,
                                               seed=0)
    batch = collator(tokenize_sentences(AutoTokenizer.from_pretrained(tiny_model_dir), SENTENCES, 32))
    masked_lm_loss(loaded.model, loaded.head_name, batch).backward()

    trainable = {n for n, p in loaded.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("cls.") for n in trainable)  # the tied decoder is the encoder's
    assert all(p.grad is None for p in loaded.model.base_model.parameters())
    assert all(p.grad is not None for n, p in loaded.model.named_parameters() if n in trainable)


def test_head_only_and_full_adaptations_never_share_a_cache(tiny_model_dir, tmp_path):
    from cloce.mlm_adapt import CACHE_FORMAT, adapted_dir, sentences_digest

    digest = sentences_digest(SENTENCES)
    full = adapted_dir(tiny_model_dir, digest, QUICK, tmp_path)
    head_only = adapted_dir(tiny_model_dir, digest, MlmAdaptConfig(**asdict(QUICK) | {"head_only": True}), tmp_path)
    assert full != head_only
    # The full adaptation's key is as before head_only existed: its caches stay valid.
    settings = {k: v for k, v in asdict(QUICK).items() if k != "head_only"}
    key = json.dumps({"format": CACHE_FORMAT, "backbone": str(Path(tiny_model_dir).resolve()), "sentences": digest,
                      "config": settings}, sort_keys=True)
    assert full.name.endswith(hashlib.sha256(key.encode()).hexdigest()[:16])


# --- TrainConfig, train() and the command line -------------------------------------------


@pytest.mark.parametrize("values, message", [
    ({"label_init": "order"}, "label_init: must be 'name' or 'role'"),
    ({"template": "relation"}, "template: must be 'relation_of' or 'role_of'"),
    ({"mlm_adapt_head_only": True}, "mlm_adapt_head_only: .*mlm_adapt_steps"),
])
def test_bad_values_are_rejected_naming_the_field(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**values)


def test_defaults_are_the_options_off():
    config = TrainConfig()
    assert (config.label_init, config.template, config.mlm_adapt_head_only) == ("name", "relation_of", False)


def test_train_passes_the_options_to_prompt_variants_and_finetune_ignores_them(tiny_model_dir, tmp_path):
    from cloce.data.dataset import Dataset
    from cloce.train import train

    instances = tuple(make_instance(f"s{i}", *row) for i, row in enumerate(TINY_ROWS))
    labels = LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Component-Whole(e1,e2)"])
    dataset = Dataset(instances, instances[::2], instances[1::2], labels, has_types=False, files={})
    values = dict(model=tiny_model_dir, k=2, epochs=1, batch_size=4, max_seq_len=32, num_threads=1,
                  label_init="role", template="role_of", mlm_adapt_steps=2, mlm_adapt_batch_size=4,
                  mlm_adapt_head_only=True, cache_dir=str(tmp_path))

    prompted = train(TrainConfig(variant="prompt", **values), dataset)
    assert prompted.pipeline.template.wording == "role_of" and prompted.pipeline.vocab.label_init == "role"
    assert prompted.mlm_adapt.info["config"]["head_only"] is True
    finetuned = train(TrainConfig(variant="finetune", **values), dataset)
    assert finetuned.mlm_adapt is None and finetuned.pipeline.vocab is None


def test_the_command_line_has_a_flag_for_each_option():
    from cloce.cli import build_parser

    train_args = build_parser().parse_args(["train", "--label-init", "role", "--template", "role_of",
                                            "--mlm-adapt-head-only"])
    assert (train_args.label_init, train_args.template, train_args.mlm_adapt_head_only) == ("role", "role_of", True)
    assert build_parser().parse_args(["adapt", "--head-only"]).head_only is True
    assert build_parser().parse_args(["adapt"]).head_only is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--template", "the_relation"])


UNDIRECTED = LabelMap.from_labels(["no_relation", "org:founded_by", "per:title"])


def test_sentence_markers_by_default_exactly_where_labels_are_directed():
    """Left unset, the markers follow the labels: SemEval's directed ones get them, TACRED's
    do not; a value set either way is kept (False: the paper's template)."""
    from cloce.sentence_markers import sentence_markers_for

    assert TrainConfig().sentence_markers is None
    assert sentence_markers_for(TrainConfig(), LABELS) is True
    assert sentence_markers_for(TrainConfig(), UNDIRECTED) is False
    assert sentence_markers_for(TrainConfig(sentence_markers=False), LABELS) is False
    assert sentence_markers_for(TrainConfig(sentence_markers=True), UNDIRECTED) is True
