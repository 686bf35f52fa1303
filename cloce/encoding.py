"""Word pieces once per split, then templates assemble ids; a collator pads per batch.

Instances are tokenised word by word (`is_split_into_words`), so an entity's pieces can
be moved into another sentence (the contrastive entity swap) without tokenising again.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import torch

from cloce.data.types import EntityMention, LabelMap, RelationInstance

Word = tuple[int, ...]  # the word pieces of one sentence word


@dataclass(frozen=True)
class TokenizedInstance:
    id: str
    words: tuple[Word, ...]
    head: EntityMention  # word span + type, as in RelationInstance
    tail: EntityMention
    label: int

    @property
    def head_words(self) -> tuple[Word, ...]:
        return self.words[self.head.start : self.head.end]

    @property
    def tail_words(self) -> tuple[Word, ...]:
        return self.words[self.tail.start : self.tail.end]


@dataclass(frozen=True)
class Encoded:
    """Model input for one instance. `anchors` are the positions the model reads:
    ([MASK],) for prompts, (head marker, tail marker) for entity markers."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None
    anchors: tuple[int, ...]
    label: int


class Template(Protocol):
    def encode(self, instance: TokenizedInstance) -> Encoded: ...


def load_word_tokenizer(name_or_path: str):
    """A tokenizer that accepts pre-split words; byte-level BPE (RoBERTa) needs add_prefix_space."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    pieces = tokenizer.convert_ids_to_tokens(tokenizer(" a", add_special_tokens=False)["input_ids"])
    if pieces and pieces[0].startswith("\u0120") and not getattr(tokenizer, "add_prefix_space", True):
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, add_prefix_space=True)
    return tokenizer


def word_pieces(tokenizer, sentences: Sequence[Sequence[str]]) -> list[tuple[Word, ...]]:
    """Pieces of every word of every sentence, in one batched tokenizer call.

    The words are joined with spaces and tokenised as one text, each piece going to the word
    its characters come from: the pieces are the tokenizer's own for the sentence, whatever
    it does with pre-split words (a generic byte-level BPE tokenizer, ModernBERT's, ignores
    `add_prefix_space` and would split "fire" into `f` + `ire` instead of `Ġfire`). Where
    the tokenizer marks a word's start with the space before it (byte-level BPE), the text
    starts with a space too, so the first word reads like every other (as RoBERTa's
    `add_prefix_space=True` does)."""
    if not sentences:
        return []
    if not getattr(tokenizer, "is_fast", False):  # no offsets: the tokenizer's own word split
        return _split_word_pieces(tokenizer, sentences)
    lead = " " if _marks_word_start_with_space(tokenizer) else ""
    texts, owners = [], []
    for sentence in sentences:
        owner = [-1] * len(lead)  # per character of the text: the word it belongs to, -1 a space
        for i, word in enumerate(sentence):
            owner += ([-1] if i else []) + [i] * len(word)
        texts.append(lead + " ".join(sentence))
        owners.append(owner)
    batch = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    result = []
    for sentence, owner, ids, offsets in zip(sentences, owners, batch["input_ids"], batch["offset_mapping"]):
        pieces: list[list[int]] = [[] for _ in sentence]
        for piece, (start, end) in zip(ids, offsets):
            word = _owner_of(owner, start, end)
            if word is not None:
                pieces[word].append(piece)
        # A word that yields no piece (a stray control character) would make an entity vanish.
        result.append(tuple(tuple(p) if p else (tokenizer.unk_token_id,) for p in pieces))
    return result


def _owner_of(owner: list[int], start: int, end: int) -> int | None:
    """The word of a piece's first non-space character; a piece of spaces only (a lone `Ġ`
    or `▁`) belongs to the word after it."""
    for at in range(start, max(end, start + 1)):
        if at < len(owner) and owner[at] >= 0:
            return owner[at]
    return next((w for w in owner[start:] if w >= 0), None)


def _marks_word_start_with_space(tokenizer) -> bool:
    """A word after a space is tokenised differently from the same word opening the text."""
    alone = tokenizer("fire", add_special_tokens=False)["input_ids"]
    after = tokenizer("a fire", add_special_tokens=False)["input_ids"]
    spaced = tokenizer(" fire", add_special_tokens=False)["input_ids"]
    return after[-len(alone):] != alone and after[-len(spaced):] == spaced


def _split_word_pieces(tokenizer, sentences: Sequence[Sequence[str]]) -> list[tuple[Word, ...]]:
    batch = tokenizer([list(s) for s in sentences], is_split_into_words=True, add_special_tokens=False)
    result = []
    for i, sentence in enumerate(sentences):
        pieces: list[list[int]] = [[] for _ in sentence]
        for piece, word in zip(batch["input_ids"][i], batch.word_ids(i)):
            pieces[word].append(piece)
        result.append(tuple(tuple(p) if p else (tokenizer.unk_token_id,) for p in pieces))
    return result


def tokenize_instances(
    instances: Sequence[RelationInstance], tokenizer, label_map: LabelMap
) -> list[TokenizedInstance]:
    words = word_pieces(tokenizer, [inst.tokens for inst in instances])
    return [
        TokenizedInstance(inst.id, w, inst.head, inst.tail, label_map.id_of(inst.relation))
        for inst, w in zip(instances, words)
    ]


def text_pieces(tokenizer, text: str) -> list[int]:
    """Pieces of a fixed phrase of the template, tokenised like sentence words."""
    return [p for word in word_pieces(tokenizer, [text.split()])[0] for p in word]


def swap_entities(target: TokenizedInstance, source: TokenizedInstance) -> TokenizedInstance:
    """`target`'s sentence and label with its head and tail mentions (and types) replaced by `source`'s."""
    spans = sorted(
        [("head", target.head, source.head_words, source.head.type), ("tail", target.tail, source.tail_words, source.tail.type)],
        key=lambda s: s[1].start,
    )
    words: list[Word] = []
    new_spans: dict[str, EntityMention] = {}
    cursor = 0
    for role, span, new_words, new_type in spans:
        words.extend(target.words[cursor : span.start])
        new_spans[role] = EntityMention(len(words), len(words) + len(new_words), new_type)
        words.extend(new_words)
        cursor = max(cursor, span.end)
    words.extend(target.words[cursor:])
    return replace(target, id=f"{target.id}<-{source.id}", words=tuple(words), head=new_spans["head"], tail=new_spans["tail"])


def keep_window(n_pieces: int, budget: int, must_keep: tuple[int, int]) -> tuple[int, int]:
    """A window [start, end) of at most `budget` pieces that keeps `must_keep` whole when it fits."""
    if n_pieces <= budget:
        return 0, n_pieces
    lo, hi = must_keep
    if hi - lo >= budget:
        return lo, lo + budget
    slack = budget - (hi - lo)
    start = max(0, min(lo - slack // 2, n_pieces - budget))
    return start, start + budget


@dataclass(frozen=True)
class SpecialLayout:
    """The tokenizer's own special tokens around one or two segments (BERT and RoBERTa differ).

    Read off by encoding a probe pair, so it holds for any tokenizer without relying on
    version-specific helpers.
    """

    prefix: tuple[int, ...]
    between: tuple[int, ...]
    suffix: tuple[int, ...]
    single_suffix: tuple[int, ...]
    a_type: int | None  # token type of prefix and A; None when the model takes no token types
    b_type: int | None

    @property
    def n_special(self) -> int:
        return len(self.prefix) + len(self.between) + len(self.suffix)

    @classmethod
    def of(cls, tokenizer) -> "SpecialLayout":
        a = tokenizer("relation", add_special_tokens=False)["input_ids"]
        b = tokenizer("entity", add_special_tokens=False)["input_ids"]
        pair = tokenizer("relation", "entity")
        ids = list(pair["input_ids"])
        a_at = _find(ids, a, 0)
        b_at = _find(ids, b, a_at + len(a))
        single = list(tokenizer("relation")["input_ids"])
        types = pair.get("token_type_ids")
        return cls(
            prefix=tuple(ids[:a_at]),
            between=tuple(ids[a_at + len(a) : b_at]),
            suffix=tuple(ids[b_at + len(b) :]),
            single_suffix=tuple(single[_find(single, a, 0) + len(a) :]),
            a_type=None if types is None else types[a_at],
            b_type=None if types is None else types[b_at],
        )

    def pair(self, a: list[int], b: list[int]) -> tuple[tuple[int, ...], tuple[int, ...] | None, int]:
        """ids of the pair, their token types, and the position where B starts."""
        ids = (*self.prefix, *a, *self.between, *b, *self.suffix)
        b_start = len(self.prefix) + len(a) + len(self.between)
        if self.a_type is None:
            return ids, None, b_start
        return ids, (self.a_type,) * b_start + (self.b_type,) * (len(ids) - b_start), b_start

    def single(self, a: list[int]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
        ids = (*self.prefix, *a, *self.single_suffix)
        return ids, None if self.a_type is None else (self.a_type,) * len(ids)


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for i in range(start, len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i
    raise ValueError("cannot locate the probe segment in the tokenizer's special-token layout")


class EncodedSplit(torch.utils.data.Dataset):
    def __init__(self, encoded: Sequence[Encoded]):
        self.items = list(encoded)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Encoded]:
        return index, self.items[index]


@dataclass(frozen=True)
class Collator:
    """Pads a batch to its own longest sequence, never to max length."""

    pad_id: int

    def __call__(self, batch: Sequence[tuple[int, Encoded]]) -> dict[str, torch.Tensor]:
        longest = max(len(e.input_ids) for _, e in batch)
        input_ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
        token_types = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, (_, e) in enumerate(batch):
            n = len(e.input_ids)
            input_ids[row, :n] = torch.tensor(e.input_ids)
            attention_mask[row, :n] = 1
            if e.token_type_ids is not None:
                token_types[row, :n] = torch.tensor(e.token_type_ids)
        out = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "anchors": torch.tensor([e.anchors for _, e in batch], dtype=torch.long),
            "labels": torch.tensor([e.label for _, e in batch], dtype=torch.long),
            "index": torch.tensor([i for i, _ in batch], dtype=torch.long),
        }
        if batch[0][1].token_type_ids is not None:
            out["token_type_ids"] = token_types
        return out
