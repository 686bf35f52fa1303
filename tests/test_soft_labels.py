"""Soft labels: one virtual token per relation, started from its readable name, scored at [MASK]."""
import pytest
import torch

from conftest import make_instance

from cloce.data.types import LabelMap
from cloce.encoding import Collator, load_word_tokenizer
from cloce.pipeline import build_pipeline, type_vocabulary
from cloce.variants import get_variant
from cloce.vocab import readable_label_name, readable_type_name

TACRED_LABELS = LabelMap.from_labels(["no_relation", "per:countries_of_residence", "org:founded_by"])
INSTANCES = [
    make_instance("a", "john lives in paris .", (0, 1), (3, 4), "per:countries_of_residence", "PERSON", "CITY"),
    make_instance("b", "acme was founded by john .", (0, 1), (4, 5), "org:founded_by", "ORGANIZATION", "PERSON"),
    make_instance("c", "john met mary in paris .", (0, 1), (2, 3), "no_relation", "PERSON", "PERSON"),
]


@pytest.mark.parametrize(
    "label, readable",
    [
        ("per:countries_of_residence", "countries of residence"),
        ("org:founded_by", "founded by"),
        ("Cause-Effect(e1,e2)", "cause effect"),
        ("Cause-Effect(e2,e1)", "cause effect"),
        ("no_relation", "no relation"),
        ("Other", "other"),
    ],
)
def test_readable_label_name(label, readable):
    assert readable_label_name(label) == readable


def test_readable_type_name():
    assert readable_type_name("STATE_OR_PROVINCE") == "state or province"


@pytest.fixture(scope="module")
def bert_tokenizer(bert_path):
    return load_word_tokenizer(bert_path)


@pytest.fixture(scope="module")
def prompt_ki(bert_path, bert_tokenizer, tiny_bert_config):
    torch.manual_seed(0)
    return build_pipeline(
        get_variant("prompt_ki"), TACRED_LABELS, type_vocabulary(INSTANCES), model_name=bert_path,
        max_seq_len=64, backbone_config=tiny_bert_config, tokenizer=bert_tokenizer,
    )


@pytest.fixture(scope="module")
def original_embeddings(tiny_bert_config):
    """The word-embedding rows the pipeline's model had before its vocabulary was resized."""
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(0)  # the same seed and the same first draw as `prompt_ki`
    return AutoModelForMaskedLM.from_config(tiny_bert_config).get_input_embeddings().weight.detach()


def batch_of(pipeline, instances):
    encoded = pipeline.encode(pipeline.tokenize(instances))
    return Collator(pipeline.tokenizer.pad_token_id)(list(enumerate(encoded)))


def mean_piece_row(weights, tokenizer, text):
    pieces = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
    return weights[pieces].mean(dim=0)


def test_each_soft_label_starts_as_the_mean_embedding_of_its_readable_name(
    prompt_ki, bert_tokenizer, original_embeddings
):
    weights = prompt_ki.model.mlm.get_input_embeddings().weight.detach()
    vocab = prompt_ki.vocab

    assert torch.equal(weights[: vocab.base_size], original_embeddings)  # resizing kept the real rows
    for label, row in zip(vocab.label_names, vocab.label_ids):
        expected = mean_piece_row(original_embeddings, bert_tokenizer, readable_label_name(label))
        torch.testing.assert_close(weights[row], expected)


def test_each_type_token_starts_as_the_mean_embedding_of_its_readable_name(
    prompt_ki, bert_tokenizer, original_embeddings
):
    weights = prompt_ki.model.mlm.get_input_embeddings().weight.detach()
    vocab = prompt_ki.vocab

    assert vocab.type_names == ("CITY", "ORGANIZATION", "PERSON")
    for name in vocab.type_names:
        expected = mean_piece_row(original_embeddings, bert_tokenizer, readable_type_name(name))
        torch.testing.assert_close(weights[vocab.type_id(name)], expected)


def test_new_decoder_bias_entries_start_at_zero(prompt_ki):
    bias = prompt_ki.model.mlm.get_output_embeddings().bias.detach()

    assert bias.shape == (prompt_ki.vocab.size,)
    assert torch.count_nonzero(bias[prompt_ki.vocab.base_size :]) == 0


@pytest.mark.parametrize("backbone", ["bert", "roberta"])
def test_prompt_model_scores_exactly_the_label_tokens_of_the_mlm_head(
    backbone, prompt_ki, roberta_path, tiny_roberta_config
):
    pipeline = prompt_ki if backbone == "bert" else build_pipeline(
        get_variant("prompt_ki"), TACRED_LABELS, type_vocabulary(INSTANCES), model_name=roberta_path,
        max_seq_len=64, backbone_config=tiny_roberta_config,
    )
    model = pipeline.model.eval()
    batch = batch_of(pipeline, INSTANCES)

    with torch.no_grad():
        logits = model(batch)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        vocab_logits = model.mlm(**inputs).logits
    at_mask = vocab_logits[torch.arange(len(INSTANCES)), batch["anchors"][:, 0]]

    assert logits.shape == (len(INSTANCES), len(TACRED_LABELS))
    torch.testing.assert_close(logits, at_mask[:, pipeline.vocab.label_ids])


def test_marker_model_returns_one_logit_per_label(bert_path, bert_tokenizer, tiny_bert_config):
    pipeline = build_pipeline(
        get_variant("finetune"), TACRED_LABELS, type_vocabulary(INSTANCES), model_name=bert_path,
        max_seq_len=64, backbone_config=tiny_bert_config, tokenizer=bert_tokenizer,
    )
    logits = pipeline.model(batch_of(pipeline, INSTANCES))

    assert logits.shape == (len(INSTANCES), len(TACRED_LABELS))
