"""KnowPrompt: its virtual words start at the stated means, its template's anchors, its KE term
(zero distance where s + r = o, growing with the violation), its negatives and its optimiser."""
from collections import Counter

import pytest
import torch

from cloce.checkpoint import load_checkpoint, save_checkpoint
from cloce.config import TrainConfig
from cloce.encoding import text_pieces
from cloce.knowprompt import (
    KE_MARGIN, TYPE_WORDS, corrupted_spans, ke_distance, ke_loss, span_means, type_counts,
)
from cloce.optim import model_adamw
from cloce.pipeline import build_pipeline
from cloce.train import train, word_lr
from cloce.variants import get_variant
from cloce.vocab import readable_label_name
from tests.conftest import make_instance
from tests.test_train_loop import tiny_config, tiny_dataset

TYPED = [make_instance("a", "x y z", (0, 1), (2, 3), "born_in", "PERSON", "CITY"),
         make_instance("b", "x y z", (0, 1), (2, 3), "born_in", "PERSON", "COUNTRY"),
         make_instance("c", "x y z", (0, 1), (2, 3), "no_relation", "ORGANIZATION", "CITY")]


@pytest.fixture(scope="module")
def typed_pipeline(tiny_bert_config):
    from cloce.data import LabelMap

    torch.manual_seed(0)
    return build_pipeline(get_variant("knowprompt"), LabelMap.from_labels(["no_relation", "born_in"]),
                          ("CITY", "COUNTRY", "ORGANIZATION", "PERSON"), backbone_config=tiny_bert_config,
                          type_counts=type_counts(TYPED), ke_weight=0.001)


def test_virtual_type_words_start_at_the_frequency_weighted_type_words(typed_pipeline):
    pipeline = typed_pipeline
    weights = pipeline.model.mlm.get_input_embeddings().weight.detach()
    base = pipeline.vocab.base_size

    def word(text):
        return weights[text_pieces(pipeline.tokenizer, text)].mean(0)

    assert type_counts(TYPED) == {"head": Counter({"PERSON": 2, "ORGANIZATION": 1}),
                                  "tail": Counter({"CITY": 2, "COUNTRY": 1})}
    sub, obj = (pipeline.vocab.type_id(w) for w in TYPE_WORDS)
    assert (sub, obj) == (base, base + 1)
    assert torch.allclose(weights[sub], (2 * word("person") + word("organization")) / 3, atol=1e-6)
    assert torch.allclose(weights[obj], (2 * word("city") + word("country")) / 3, atol=1e-6)
    # One virtual answer word per relation, from the label's own words.
    for label, row in zip(pipeline.label_map.labels, pipeline.vocab.label_ids):
        assert torch.allclose(weights[row], word(readable_label_name(label)), atol=1e-6)


def test_untyped_data_starts_both_type_words_at_the_generic_type(tiny_bert_config):
    data = tiny_dataset()
    pipeline = build_pipeline(get_variant("knowprompt"), data.label_map, ("entity",), backbone_config=tiny_bert_config,
                              type_counts=type_counts(data.train))
    weights = pipeline.model.mlm.get_input_embeddings().weight.detach()
    entity = weights[text_pieces(pipeline.tokenizer, "entity")].mean(0)
    base = pipeline.vocab.base_size
    assert torch.allclose(weights[base], entity) and torch.allclose(weights[base + 1], entity)


def test_the_anchors_are_the_mask_and_the_entities_between_their_type_words(typed_pipeline):
    pipeline = typed_pipeline
    tokenized = pipeline.tokenize(TYPED[:1])[0]
    encoded = pipeline.template.encode(tokenized)
    ids = encoded.input_ids
    mask_at, s0, s1, o0, o1 = encoded.anchors
    sub, obj = (pipeline.vocab.type_id(w) for w in TYPE_WORDS)
    assert ids[mask_at] == pipeline.tokenizer.mask_token_id
    assert ids[s0 - 1] == ids[s1] == sub and ids[o0 - 1] == ids[o1] == obj
    assert list(ids[s0:s1]) == [p for w in tokenized.head_words for p in w]
    assert list(ids[o0:o1]) == [p for w in tokenized.tail_words for p in w]
    at = text_pieces(pipeline.tokenizer, "@")[0]
    assert ids.count(at) == 2  # the sentence's head marked `@ head @`, as KnowPrompt marks it


def test_the_ke_distance_is_zero_where_the_triple_holds_and_the_loss_grows_with_the_violation():
    torch.manual_seed(0)
    s, r = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.allclose(ke_distance(s, r, s + r), torch.zeros(4))
    far = torch.full((4,), 5.0)
    losses = [ke_loss(torch.full((4,), d), far).item() for d in (0.0, 0.5, 1.0, 3.0)]
    assert losses == sorted(losses) and losses[0] < losses[-1]
    # At the exact triple, only the constant -log σ(γ) and the negatives' term are left.
    expected = -torch.nn.functional.logsigmoid(torch.tensor(KE_MARGIN)) - torch.nn.functional.logsigmoid(far[0] - KE_MARGIN)
    assert ke_loss(torch.zeros(4), far).item() == pytest.approx(expected.item())
    # A corrupted triple that holds is penalised: closer negatives cost more.
    assert ke_loss(torch.zeros(4), torch.zeros(4)) > ke_loss(torch.zeros(4), far)


def test_span_means_and_the_negatives_are_functions_of_instance_and_epoch():
    states = torch.arange(12.0).view(1, 6, 2)
    assert torch.equal(span_means(states, torch.tensor([1]), torch.tensor([3])), torch.tensor([[3.0, 4.0]]))  # rows 1, 2
    spans = corrupted_spans([10, 7], [3, 4], epoch=2)
    assert torch.equal(spans, corrupted_spans([10, 7], [3, 4], epoch=2))
    assert not torch.equal(spans, corrupted_spans([10, 7], [3, 4], epoch=3))
    for row, length in zip(spans.tolist(), [10, 7]):
        for start, end in (row[:2], row[2:]):
            assert 1 <= start < end <= length - 1 and end - start <= 5


def test_the_virtual_words_train_at_their_own_learning_rate(typed_pipeline):
    config = TrainConfig(variant="knowprompt", lr=1e-4, virtual_lr=3e-3)
    assert word_lr(config, get_variant("knowprompt")) == 3e-3
    assert word_lr(TrainConfig(variant="prompt_ki", virtual_lr=3e-3), get_variant("prompt_ki")) is None
    optimizer = model_adamw(typed_pipeline.model, 1e-4, 0.01, word_lr=3e-3)
    words = typed_pipeline.model.embeddings.word_embeddings.weight
    (group,) = [g for g in optimizer.param_groups if any(p is words for p in g["params"])]
    assert group["lr"] == 3e-3 and len(group["params"]) == 1
    assert {g["lr"] for g in optimizer.param_groups if g is not group} == {1e-4}


def test_knowprompt_trains_with_its_ke_term_and_its_checkpoint_predicts_the_same(tiny_bert_config, tmp_path):
    from cloce.predict import predict_file
    from tests.test_checkpoint import _write_test_file

    with_ke = train(tiny_config(variant="knowprompt", epochs=1, ke_weight=1.0), tiny_dataset(),
                    backbone_config=tiny_bert_config)
    without = train(tiny_config(variant="knowprompt", epochs=1, ke_weight=0.0), tiny_dataset(),
                    backbone_config=tiny_bert_config)
    assert with_ke.history[0].train_loss > without.history[0].train_loss  # the KE term is in the loss
    save_checkpoint(with_ke.pipeline, tmp_path / "ckpt")
    assert load_checkpoint(tmp_path / "ckpt").type_names == with_ke.pipeline.type_names
    _write_test_file(tmp_path / "test.txt", tiny_dataset())
    rows = predict_file(tmp_path / "ckpt", tmp_path / "test.txt", None)
    assert [r["predicted"] for r in rows] == [with_ke.pipeline.label_map.labels[i] for i in with_ke.test_predictions]
