"""PTR: its rules (SemEval's as PTR's own, typed data's from the types), its template's
sub-prompts, a class score as the sum of its masks' word log-probabilities, and its loss."""
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from cloce.checkpoint import load_checkpoint, save_checkpoint
from cloce.data import LabelMap
from cloce.encoding import Collator, text_pieces
from cloce.mlm_head import mlm_logits
from cloce.pipeline import build_pipeline
from cloce.ptr import derive_rules, read_rules_file
from cloce.train import train
from cloce.variants import get_variant
from tests.conftest import make_instance
from tests.test_train_loop import tiny_config, tiny_dataset

KNOWPROMPT_TEMP = Path(__file__).parent / "data" / "knowprompt_semeval_temp.txt"


def semeval_label_map() -> LabelMap:
    """SemEval's 19 labels, as the rules file lists them."""
    names = [line.split("\t")[1] for line in KNOWPROMPT_TEMP.read_text().splitlines() if line.strip()]
    return LabelMap.from_labels(names)


def test_semeval_rules_are_ptrs_own_the_argument_roles():
    label_map = semeval_label_map()
    assert len(label_map.labels) == 19 and label_map.no_relation == "Other"
    derived = derive_rules(label_map, [])
    assert derived == read_rules_file(KNOWPROMPT_TEMP, label_map)  # every label, every word
    at = label_map.labels.index
    assert derived.relation[at("Cause-Effect(e1,e2)")] == ("cause", "of", "effect")
    assert derived.relation[at("Cause-Effect(e2,e1)")] == ("effect", "of", "cause")
    assert (derived.head[at("Other")], derived.relation[at("Other")]) == ("nothing", ("has", "nothing", "to"))


def test_on_typed_data_the_entity_sub_prompts_predict_the_relations_types():
    label_map = LabelMap.from_labels(["no_relation", "org:founded_by", "per:city_of_birth"])
    train = [make_instance("a", "x y z", (0, 1), (2, 3), "org:founded_by", "ORGANIZATION", "PERSON"),
             make_instance("b", "x y z", (0, 1), (2, 3), "org:founded_by", "ORGANIZATION", "PERSON"),
             make_instance("c", "x y z", (0, 1), (2, 3), "org:founded_by", "PERSON", "PERSON"),
             make_instance("d", "x y z", (0, 1), (2, 3), "per:city_of_birth", "PERSON", "CITY"),
             make_instance("e", "x y z", (0, 1), (2, 3), "no_relation", "PERSON", "CITY")]
    rules = derive_rules(label_map, train)
    assert rules.head == ("entity", "organization", "person")  # the most frequent head type; NA: "entity"
    assert rules.tail == ("entity", "person", "city")
    assert rules.relation == (("no", "relation", "to"), ("founded", "by", "to"), ("city", "of", "birth"))


def test_a_rules_file_with_a_missing_label_names_the_file():
    with pytest.raises(ValueError, match=r"knowprompt_semeval_temp.txt: no PTR rule for the labels \['per:title'\]"):
        read_rules_file(KNOWPROMPT_TEMP, LabelMap.from_labels(["Other", "per:title"]))


@pytest.fixture(scope="module")
def pipeline(tiny_bert_config):
    torch.manual_seed(0)
    data = tiny_dataset()
    return build_pipeline(get_variant("ptr"), data.label_map, ("entity",), backbone_config=tiny_bert_config,
                          ptr_rules=derive_rules(data.label_map, data.train))


def test_the_template_holds_a_mask_per_word_and_the_entities(pipeline):
    tokenized = pipeline.tokenize(tiny_dataset().train[:1])[0]
    encoded = pipeline.template.encode(tokenized)
    mask = pipeline.tokenizer.mask_token_id
    assert len(encoded.anchors) == pipeline.ptr_rules.n_masks == 5
    assert all(encoded.input_ids[at] == mask for at in encoded.anchors)
    head = [p for w in tokenized.head_words for p in w]
    # the [MASK]_h head [MASK] [MASK] [MASK] the [MASK]_t tail
    start = encoded.anchors[0] + 1
    assert list(encoded.input_ids[start:start + len(head)]) == head
    assert encoded.input_ids[encoded.anchors[0] - 1] == text_pieces(pipeline.tokenizer, "the")[0]


def test_a_class_score_is_the_sum_of_its_masks_word_log_probabilities(pipeline):
    model = pipeline.model.eval()
    items = [pipeline.template.encode(t) for t in pipeline.tokenize(tiny_dataset().train[:3])]
    batch = Collator(pipeline.tokenizer.pad_token_id)(list(enumerate(items)))
    with torch.no_grad():
        scores, aux = model(batch, output="with_aux_loss")
        states = model.mlm.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                      token_type_ids=batch["token_type_ids"]).last_hidden_state
        verbalizer_rows = [getattr(model, f"rows_{m}") for m in range(model.n_masks)]
        for row in range(3):
            per_mask = [mlm_logits(model.mlm, model.head, states[row, at])[verbalizer_rows[m]].log_softmax(-1)
                        for m, at in enumerate(batch["anchors"][row].tolist())]
            for label in range(len(pipeline.label_map)):
                words = model.label_word[label]
                expected = sum(per_mask[m][words[m]] for m in range(model.n_masks))
                assert scores[row, label].item() == pytest.approx(expected.item(), abs=1e-5)
        # PTR's loss beside the cross-entropy over classes: the mean over masks of each mask's own
        gold = model.label_word[batch["labels"]]
        log_probs = model.mask_log_probs(batch)
        expected_aux = sum(F.nll_loss(log_probs[m], gold[:, m]) for m in range(model.n_masks)) / model.n_masks
        assert aux.item() == pytest.approx(expected_aux.item(), abs=1e-6)


def test_a_type_word_of_several_pieces_gets_a_row_of_its_own_that_starts_as_their_mean(tiny_bert_config):
    from cloce.data.types import LabelMap as Labels

    labels = Labels.from_labels(["no_relation", "used_for"])
    train = [make_instance("a", "x y z", (0, 1), (2, 3), "used_for", "OTHER_SCIENTIFIC_TERM", "TASK")]
    pipeline = build_pipeline(get_variant("ptr"), labels, ("OTHER_SCIENTIFIC_TERM", "TASK"),
                              backbone_config=tiny_bert_config, ptr_rules=derive_rules(labels, train))
    base = pipeline.base_vocab_size
    embeddings = pipeline.model.mlm.get_input_embeddings().weight
    pieces = text_pieces(pipeline.tokenizer, "other scientific term")
    assert len(pieces) > 1 and embeddings.shape[0] > base
    assert torch.allclose(embeddings[base], embeddings[pieces].mean(0))
    assert base in pipeline.model.rows_0.tolist()


def test_ptr_trains_and_its_checkpoint_predicts_the_same(tiny_bert_config, tmp_path):
    from cloce.predict import predict_file
    from tests.test_checkpoint import _write_test_file

    result = train(tiny_config(variant="ptr", epochs=1), tiny_dataset(), backbone_config=tiny_bert_config)
    assert result.history[0].train_loss > 0
    save_checkpoint(result.pipeline, tmp_path / "ckpt")
    assert load_checkpoint(tmp_path / "ckpt").ptr_rules == result.pipeline.ptr_rules
    _write_test_file(tmp_path / "test.txt", tiny_dataset())
    rows = predict_file(tmp_path / "ckpt", tmp_path / "test.txt", None)
    assert [r["predicted"] for r in rows] == [result.pipeline.label_map.labels[i] for i in result.test_predictions]
