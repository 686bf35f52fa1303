"""How an instance becomes model input: the cloze prompt, entity markers, the entity swap.

    [CLS] sentence [SEP] the relation of [T_h] head and [T_t] tail is [MASK] [SEP]

Tiny random backbones, real tokenizers (BERT uncased word pieces, a small byte-level BPE).
"""
import pytest

from conftest import make_instance

from cloce.data.types import EntityMention, LabelMap
from cloce.encoding import TokenizedInstance, load_word_tokenizer, swap_entities, word_pieces
from cloce.pipeline import build_pipeline, type_vocabulary
from cloce.prompt import PromptTooLongError
from cloce.variants import get_variant

LABELS = LabelMap.from_labels(["Other", "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"])
FIRE = make_instance("fire", "the fire caused smoke .", (1, 2), (3, 4), "Cause-Effect(e1,e2)")
TYPED = make_instance("typed", "john lives in paris .", (0, 1), (3, 4), "Other", "PERSON", "CITY")


@pytest.fixture(scope="module")
def bert_tokenizer(bert_path):
    return load_word_tokenizer(bert_path)


@pytest.fixture(scope="module")
def roberta_tokenizer(roberta_path):
    return load_word_tokenizer(roberta_path)


@pytest.fixture(scope="module")
def bert_pipeline(bert_path, bert_tokenizer, tiny_bert_config):
    def build(variant, instances, max_seq_len=64):
        return build_pipeline(
            get_variant(variant), LABELS, type_vocabulary(instances), model_name=bert_path,
            max_seq_len=max_seq_len, backbone_config=tiny_bert_config, tokenizer=bert_tokenizer,
        )

    return build


@pytest.fixture(scope="module")
def roberta_pipeline(roberta_path, roberta_tokenizer, tiny_roberta_config):
    def build(variant, instances, max_seq_len=64):
        return build_pipeline(
            get_variant(variant), LABELS, type_vocabulary(instances), model_name=roberta_path,
            max_seq_len=max_seq_len, backbone_config=tiny_roberta_config, tokenizer=roberta_tokenizer,
        )

    return build


def encode_one(pipeline, instance):
    return pipeline.encode(pipeline.tokenize([instance]))[0]


def show(pipeline, ids):
    """Tokens as the tokenizer writes them; a virtual type token as `[T:<type>]`."""
    base = pipeline.vocab.base_size if pipeline.vocab else None
    return [
        f"[T:{pipeline.vocab.type_names[i - base]}]" if base is not None and i >= base
        else pipeline.tokenizer.convert_ids_to_tokens(i)
        for i in ids
    ]


# --- the cloze prompt ---------------------------------------------------------------


def test_bert_prompt_reads_sentence_sep_then_typed_cloze(bert_pipeline):
    pipeline = bert_pipeline("prompt_ki", [FIRE])
    encoded = encode_one(pipeline, FIRE)

    assert show(pipeline, encoded.input_ids) == [
        "[CLS]", "the", "fire", "caused", "smoke", ".", "[SEP]",
        "the", "relation", "of", "[T:entity]", "fire", "and", "[T:entity]", "smoke", "is", "[MASK]", "[SEP]",
    ]
    assert encoded.input_ids[10] == encoded.input_ids[13] == pipeline.vocab.type_id("entity")
    assert encoded.anchors == (encoded.input_ids.index(pipeline.tokenizer.mask_token_id),)
    first_sep = encoded.input_ids.index(pipeline.tokenizer.sep_token_id)
    assert encoded.token_type_ids == (0,) * (first_sep + 1) + (1,) * (len(encoded.input_ids) - first_sep - 1)
    assert encoded.label == pipeline.label_map.id_of("Cause-Effect(e1,e2)")


def test_sentence_markers_mark_the_entities_in_the_sentence_only(bert_path, bert_tokenizer, tiny_bert_config):
    pipeline = build_pipeline(get_variant("prompt_ki"), LABELS, type_vocabulary([FIRE]), model_name=bert_path,
                              max_seq_len=64, backbone_config=tiny_bert_config, tokenizer=bert_tokenizer,
                              sentence_markers=True)
    encoded = encode_one(pipeline, FIRE)

    assert show(pipeline, encoded.input_ids) == [
        "[CLS]", "the", "@", "fire", "@", "caused", "#", "smoke", "#", ".", "[SEP]",
        "the", "relation", "of", "[T:entity]", "fire", "and", "[T:entity]", "smoke", "is", "[MASK]", "[SEP]",
    ]
    assert encoded.input_ids[encoded.anchors[0]] == bert_tokenizer.mask_token_id


def test_a_marked_sentence_is_cut_around_its_marked_entities(bert_path, bert_tokenizer, tiny_bert_config):
    long = make_instance("long", " ".join(["word"] * 40 + ["the", "fire", "caused", "smoke"] + ["word"] * 40),
                         (41, 42), (43, 44), "Cause-Effect(e1,e2)")
    pipeline = build_pipeline(get_variant("prompt"), LABELS, type_vocabulary([long]), model_name=bert_path,
                              max_seq_len=24, backbone_config=tiny_bert_config, tokenizer=bert_tokenizer,
                              sentence_markers=True)
    tokens = show(pipeline, encode_one(pipeline, long).input_ids)
    assert len(tokens) == 24
    sentence = tokens[1:tokens.index("[SEP]")]
    assert "@ fire @ caused # smoke #" in " ".join(sentence)


def test_roberta_prompt_uses_its_own_special_tokens(roberta_pipeline, roberta_tokenizer):
    pipeline = roberta_pipeline("prompt_ki", [FIRE])
    encoded = encode_one(pipeline, FIRE)

    def pieces(text):
        return roberta_tokenizer.tokenize(text)  # prefix space on: the same pieces as word by word

    assert show(pipeline, encoded.input_ids) == [
        "<s>", *pieces("the fire caused smoke ."), "</s>", "</s>",
        *pieces("the relation of"), "[T:entity]", *pieces("fire and"), "[T:entity]", *pieces("smoke is"),
        "<mask>", "</s>",
    ]
    assert encoded.anchors == (len(encoded.input_ids) - 2,)
    assert encoded.input_ids[encoded.anchors[0]] == roberta_tokenizer.mask_token_id
    assert encoded.token_type_ids is None  # RoBERTa takes no token types


def test_prompt_without_types_has_no_type_tokens(bert_pipeline):
    pipeline = bert_pipeline("prompt", [TYPED])
    encoded = encode_one(pipeline, TYPED)

    assert all(i < pipeline.vocab.base_size for i in encoded.input_ids)
    assert show(pipeline, encoded.input_ids)[7:] == [
        "the", "relation", "of", "john", "and", "paris", "is", "[MASK]", "[SEP]",
    ]


def test_prompt_ki_injects_each_entity_type_as_its_own_token(bert_pipeline):
    pipeline = bert_pipeline("prompt_ki", [TYPED])
    encoded = encode_one(pipeline, TYPED)

    assert pipeline.vocab.type_names == ("CITY", "PERSON")
    assert show(pipeline, encoded.input_ids)[7:] == [
        "the", "relation", "of", "[T:PERSON]", "john", "and", "[T:CITY]", "paris", "is", "[MASK]", "[SEP]",
    ]
    assert pipeline.vocab.type_id("PERSON") != pipeline.vocab.type_id("CITY")


def test_untyped_instances_fall_back_to_the_generic_entity_type(bert_pipeline):
    pipeline = bert_pipeline("prompt_ki", [FIRE])
    encoded = encode_one(pipeline, FIRE)

    assert pipeline.vocab.type_names == ("entity",)
    assert encoded.input_ids.count(pipeline.vocab.type_id(None)) == 2


# --- truncation -----------------------------------------------------------------------


def test_long_sentence_is_cut_around_the_entities_and_the_prompt_stays_whole(bert_pipeline):
    words = ["word"] * 300
    words[150], words[155] = "fire", "smoke"
    long = make_instance("long", " ".join(words), (150, 151), (155, 156), "Cause-Effect(e1,e2)")
    pipeline = bert_pipeline("prompt_ki", [long], max_seq_len=64)
    encoded = encode_one(pipeline, long)
    tokens = show(pipeline, encoded.input_ids)

    assert len(encoded.input_ids) <= 64
    assert tokens[-2] == "[MASK]" and encoded.anchors == (len(tokens) - 2,)
    first_sep = tokens.index("[SEP]")
    assert {"fire", "smoke"} <= set(tokens[1:first_sep])
    assert tokens[first_sep + 1 :] == [
        "the", "relation", "of", "[T:entity]", "fire", "and", "[T:entity]", "smoke", "is", "[MASK]", "[SEP]",
    ]


def test_a_prompt_longer_than_max_seq_len_names_the_instance(bert_pipeline):
    head = " ".join(["fire"] * 60)
    huge = make_instance("huge-entity-7", f"{head} caused smoke", (0, 60), (61, 62), "Cause-Effect(e1,e2)")
    pipeline = bert_pipeline("prompt_ki", [huge], max_seq_len=64)

    with pytest.raises(PromptTooLongError, match="huge-entity-7"):
        encode_one(pipeline, huge)


# --- entity markers (the fine-tuning baseline) ----------------------------------------


@pytest.mark.parametrize("backbone", ["bert", "roberta"])
def test_entity_markers_wrap_head_and_tail_and_anchor_the_opening_markers(
    backbone, bert_pipeline, roberta_pipeline
):
    pipeline = (bert_pipeline if backbone == "bert" else roberta_pipeline)("finetune", [FIRE])
    encoded = encode_one(pipeline, FIRE)
    marked = ["the", "@", "fire", "@", "caused", "#", "smoke", "#", "."]
    pieces = [p for w in word_pieces(pipeline.tokenizer, [marked])[0] for p in w]
    bos, eos = pipeline.tokenizer.cls_token_id, pipeline.tokenizer.sep_token_id

    assert encoded.input_ids == (bos, *pieces, eos)

    def n_pieces(words):
        return sum(len(w) for w in word_pieces(pipeline.tokenizer, [words])[0])

    # Each anchor is the first piece of an opening marker: after [CLS]/<s> and the words before it.
    assert encoded.anchors == (1 + n_pieces(marked[:1]), 1 + n_pieces(marked[:5]))
    head_marker, tail_marker = word_pieces(pipeline.tokenizer, [["@", "#"]])[0]
    assert encoded.input_ids[encoded.anchors[0]] == head_marker[0]
    assert encoded.input_ids[encoded.anchors[1]] == tail_marker[0]


def test_typed_entity_markers_spell_out_the_type(bert_pipeline):
    pipeline = bert_pipeline("finetune", [TYPED])
    encoded = encode_one(pipeline, TYPED)
    tokens = show(pipeline, encoded.input_ids)

    assert tokens == [
        "[CLS]", "@", "*", "person", "*", "john", "@", "lives", "in",
        "#", "^", "city", "^", "paris", "#", ".", "[SEP]",
    ]
    assert encoded.anchors == (1, 9)


# --- word pieces and the contrastive entity swap ---------------------------------------


def test_swap_entities_moves_source_mentions_into_the_target_sentence():
    # target: tail (1 word) before head (1 word); source: head of 2 words, tail of 1.
    target = TokenizedInstance(
        "t", words=((1,), (2,), (3, 3), (4,), (5,)),
        head=EntityMention(3, 4, "CITY"), tail=EntityMention(0, 1, "CITY"), label=2,
    )
    source = TokenizedInstance(
        "s", words=((10,), (11, 11), (12,), (13,)),
        head=EntityMention(1, 3, "PERSON"), tail=EntityMention(3, 4, "ORG"), label=5,
    )
    swapped = swap_entities(target, source)

    assert swapped.words == ((13,), (2,), (3, 3), (11, 11), (12,), (5,))
    assert swapped.tail == EntityMention(0, 1, "ORG")
    assert swapped.head == EntityMention(3, 5, "PERSON")
    assert swapped.head_words == source.head_words and swapped.tail_words == source.tail_words
    assert swapped.label == 2 and swapped.id == "t<-s"


def test_a_word_without_pieces_becomes_unk(bert_tokenizer):
    # BERT's normaliser drops a zero-width space entirely: no piece at all for that word.
    assert bert_tokenizer("\u200b", add_special_tokens=False)["input_ids"] == []
    words = word_pieces(bert_tokenizer, [["fire", "\u200b", "smoke"]])[0]

    assert len(words) == 3
    assert words[1] == (bert_tokenizer.unk_token_id,)
