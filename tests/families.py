"""Tiny random checkpoints of the encoder families researchers use, each with a tokenizer of
its own kind trained here on SemEval sentences, saved with `save_pretrained` as the hub
would hand them over: with the family's MLM head and headless (like a sentence encoder).

A family: (name, tokenizer kind, model_type, config overrides, the class saved as "with a
head", the class saved as "headless").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HIDDEN = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@dataclass(frozen=True)
class Family:
    name: str
    tokenizer: str  # wordpiece | bytelevel | unigram_xlmr | unigram_albert | unigram_deberta | bytelevel_generic
    model_type: str
    config: dict = field(default_factory=dict)
    with_head: str = "AutoModelForMaskedLM"
    headless: str = "AutoModel"


FAMILIES = (
    Family("bert", "wordpiece", "bert"),
    Family("roberta", "bytelevel", "roberta", dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)),
    Family("xlm-roberta", "unigram_xlmr", "xlm-roberta", dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1)),
    Family("albert", "unigram_albert", "albert", dict(embedding_size=16, pad_token_id=0)),
    Family("deberta-v2", "unigram_deberta", "deberta-v2", dict(legacy=True, pad_token_id=0)),
    Family("deberta-v3", "unigram_deberta", "deberta-v2",
           dict(legacy=False, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"], pad_token_id=0)),
    # The generator's MLM head; headless: the discriminator (ELECTRA's released encoder).
    Family("electra", "wordpiece", "electra", dict(embedding_size=16), headless="ElectraForPreTraining"),
    Family("distilbert", "wordpiece", "distilbert", dict(pad_token_id=0)),
    Family("modernbert", "bytelevel_generic", "modernbert",
           dict(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
                global_attn_every_n_layers=2, local_attention=16)),
)
FAMILY_NAMES = tuple(f.name for f in FAMILIES)

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def corpus_sentences(data_dir: Path, n: int = 300) -> list[str]:
    import json

    lines = (Path(data_dir) / "train.txt").read_text().splitlines()[:n]
    words = [json.loads(line)["token"] for line in lines]
    # The prompt's fixed words, so every tokenizer has them whole.
    return [" ".join(w) for w in words] + ["the relation of entity head and entity tail is"] * 5


def train_tokenizer(kind: str, sentences: list[str], directory: Path):
    """A tokenizer of the family's own kind (its class, its model), saved to `directory`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "wordpiece":
        from transformers import BertTokenizer

        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(sentences, trainers.WordPieceTrainer(vocab_size=1500, special_tokens=BERT_SPECIALS))
        tokenizer = BertTokenizer(vocab=tok.get_vocab())
    elif kind in ("bytelevel", "bytelevel_generic"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ROBERTA_SPECIALS if kind == "bytelevel" else ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
        trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(sentences, trainer)
        if kind == "bytelevel":
            from transformers import RobertaTokenizer

            vocab, merges = _bpe_vocab_and_merges(tok)
            tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
        else:  # ModernBERT ships a generic fast tokenizer: no family class, no add_prefix_space
            from transformers import PreTrainedTokenizerFast

            tok.decoder = decoders.ByteLevel()
            ids = {t: tok.token_to_id(t) for t in ("[CLS]", "[SEP]")}
            tok.post_processor = processors.TemplateProcessing(
                single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=list(ids.items()))
            tokenizer = PreTrainedTokenizerFast(
                tokenizer_object=tok, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]",
                mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
    else:  # SentencePiece-style unigram: XLM-R, ALBERT, DeBERTa-v2/v3
        from transformers import AlbertTokenizer, DebertaV2Tokenizer, XLMRobertaTokenizer

        specials = {"unigram_xlmr": ROBERTA_SPECIALS, "unigram_albert": ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
                    "unigram_deberta": ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]}[kind]
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.train_from_iterator(sentences, trainers.UnigramTrainer(
            vocab_size=1500, special_tokens=specials, unk_token=specials[1] if kind != "unigram_xlmr" else "<unk>"))
        vocab = _unigram_vocab(tok)
        cls = {"unigram_xlmr": XLMRobertaTokenizer, "unigram_albert": AlbertTokenizer,
               "unigram_deberta": DebertaV2Tokenizer}[kind]
        tokenizer = cls(vocab=vocab)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def _bpe_vocab_and_merges(tok):
    import json

    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def _unigram_vocab(tok) -> list[tuple[str, float]]:
    import json

    return [(piece, score) for piece, score in json.loads(tok.to_str())["model"]["vocab"]]


def save_family(family: Family, directory: Path, sentences: list[str], with_head: bool) -> str:
    """The family's tiny random checkpoint in `directory` (weights, config, tokenizer)."""
    import torch
    import transformers
    from transformers import AutoConfig

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(family.tokenizer, sentences, directory)
    config = AutoConfig.for_model(family.model_type, vocab_size=len(tokenizer), max_position_embeddings=256,
                                  **HIDDEN, **family.config)
    torch.manual_seed(0)
    cls = getattr(transformers, family.with_head if with_head else family.headless)
    model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls(config)
    model.save_pretrained(str(directory))
    return str(directory)
