"""SciERC, the first real data through the TACRED reader: the shared copy the
`scierc_fewshot` experiment points at (relative to the repository root), its labels, and its
entity types becoming prompt_ki's type tokens."""
from __future__ import annotations

from pathlib import Path

import pytest

from cloce.data import load_dataset
from cloce.data.readers import TACRED, detect_format
from cloce.data.sampling import sample_k_shot
from cloce.encoding import load_word_tokenizer
from cloce.pipeline import build_pipeline, type_vocabulary
from cloce.variants import get_variant
from study.configuration.study_file import load_study_config

SCIERC_TYPES = ("GENERIC", "MATERIAL", "METHOD", "METRIC", "OTHER_SCIENTIFIC_TERM", "TASK")


@pytest.fixture(scope="module")
def scierc():
    folder = Path(load_study_config("scierc_fewshot").data_config().data_dir)
    if not (folder / "train.json").is_file():
        pytest.skip(f"SciERC not found at {folder} (scierc_fewshot's study.data_dir, relative to the repository)")
    return load_dataset(folder, fmt=TACRED)


def test_the_experiment_finds_the_shared_copy_beside_the_repository():
    data = load_study_config("scierc_fewshot").data_config()
    repo = Path(__file__).resolve().parents[1]
    assert data.data_dir == str(repo.parent / "shared" / "datasets" / "scierc")
    assert data.format == TACRED


def test_scierc_reads_as_tacred_json_with_8_labels(scierc):
    assert detect_format(scierc.files["train"]) == TACRED
    assert (len(scierc.train), len(scierc.val), len(scierc.test)) == (6611, 942, 2005)
    assert scierc.label_map.labels == ("no_relation", "COMPARE", "CONJUNCTION", "EVALUATE-FOR", "FEATURE-OF",
                                       "HYPONYM-OF", "PART-OF", "USED-FOR")
    assert scierc.label_map.no_relation_id == 0
    assert {i.relation for i in scierc.train} == set(scierc.label_map.labels)


def test_scierc_instances_keep_real_entity_types_and_inclusive_ends(scierc):
    first = scierc.train[0]  # J87-1003-0-0: subj tokens 17..20 inclusive, obj token 0
    assert first.id == "J87-1003-0-0"
    assert (first.head.start, first.head.end, first.head.type) == (17, 21, "OTHER_SCIENTIFIC_TERM")
    assert first.tail_tokens == ("English",) and first.tail.type == "MATERIAL"
    assert scierc.has_types


def test_every_relation_has_16_training_instances_for_k_16(scierc):
    sample = sample_k_shot(scierc.train, scierc.label_map, 16, 1)
    assert len(sample.ids) == 16 * len(scierc.label_map)


def test_real_entity_types_become_type_tokens_in_the_prompt(scierc, bert_path, tiny_bert_config):
    types = type_vocabulary([*scierc.train, *scierc.val, *scierc.test])
    assert types == SCIERC_TYPES  # no generic `entity` stand-in: every mention has its type
    pipeline = build_pipeline(get_variant("prompt_ki"), scierc.label_map, types, model_name=bert_path,
                              max_seq_len=128, backbone_config=tiny_bert_config,
                              tokenizer=load_word_tokenizer(bert_path))
    instance = scierc.train[0]
    [encoded] = pipeline.encode(pipeline.tokenize([instance]))
    head_type = pipeline.vocab.type_id("OTHER_SCIENTIFIC_TERM")
    tail_type = pipeline.vocab.type_id("MATERIAL")
    assert head_type != tail_type
    assert encoded.input_ids.index(head_type) < encoded.input_ids.index(tail_type) < encoded.anchors[0]
    assert pipeline.vocab.readable_names()[:len(types)] == [
        "generic", "material", "method", "metric", "other scientific term", "task"]
