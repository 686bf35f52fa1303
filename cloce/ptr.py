"""PTR (Han et al. 2021, "PTR: Prompt Tuning with Rules for Text Classification"), its rules
and its template.

    [CLS] sentence [SEP] the [MASK]_h head [MASK]_r1 .. [MASK]_rM the [MASK]_t tail [SEP]

A relation is the conjunction of three sub-prompts: the head entity's word (its type), the
relation's words and the tail entity's word. Each [MASK] has its own candidate words (every
word any relation puts there); a class scores the sum over the masks of the log-probability
of its word at that mask, among that mask's candidates (cloce/model.py: PtrRelationModel).

The rules (PtrRules) say each relation's words, as PTR's temp.txt files do, and are derived
from the labels and the training set when no file is given:
- directed labels (SemEval, no entity types): PTR's own SemEval setting, the argument roles:
  `Cause-Effect(e1,e2)` -> the cause e1 "cause of effect" the effect e2, the reverse
  direction swaps the roles, the no-relation label "nothing / has nothing to / nothing"
  (the rules of zjunlp/KnowPrompt's dataset/semeval/temp.txt, PTR's SemEval rules in the
  7-column form PTR's code reads; tests/test_ptr.py holds them against that file);
- otherwise (TACRED-style labels, SciERC): each entity's word is the entity type the
  relation's head (tail) has most often among the training instances (ties: alphabetical;
  no type, or the no-relation label: "entity", as PTR's NA rule), the relation's words the
  words of its name (`per:city_of_birth` -> city of birth), padded with "to" to the longest
  name's length. PTR wrote its TACRED rules by hand; a rules file (`ptr_rules_file`) takes
  those, or any other, instead.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cloce.data.types import DataError, LabelMap, RelationInstance
from cloce.encoding import Encoded, SpecialLayout, TokenizedInstance, text_pieces
from cloce.prompt import PromptTooLongError, sentence_pieces
from cloce.vocab import GENERIC_TYPE, label_roles, readable_label_name, readable_type_name

NO_RELATION_WORDS = ("nothing", ("has", "nothing", "to"), "nothing")  # PTR's SemEval `Other`
PAD_WORD = "to"


@dataclass(frozen=True)
class PtrRules:
    """Per label (in label-id order): the head's word, the relation's words, the tail's word."""

    head: tuple[str, ...]
    relation: tuple[tuple[str, ...], ...]
    tail: tuple[str, ...]

    def __post_init__(self) -> None:
        widths = {len(words) for words in self.relation}
        if len(widths) != 1:
            raise ValueError(f"PTR rules: every relation needs the same number of relation words, got {sorted(widths)}")

    @property
    def n_masks(self) -> int:
        return 2 + len(self.relation[0])

    def words_at(self, mask: int) -> tuple[str, ...]:
        """Each label's word at one mask: 0 the head's, 1..M the relation's, M+1 the tail's."""
        if mask == 0:
            return self.head
        if mask == self.n_masks - 1:
            return self.tail
        return tuple(words[mask - 1] for words in self.relation)

    def to_json(self) -> dict:
        return {"head": list(self.head), "relation": [list(w) for w in self.relation], "tail": list(self.tail)}

    @classmethod
    def from_json(cls, obj: dict) -> "PtrRules":
        return cls(tuple(obj["head"]), tuple(tuple(w) for w in obj["relation"]), tuple(obj["tail"]))


def derive_rules(label_map: LabelMap, train: Sequence[RelationInstance]) -> PtrRules:
    """The rules of the module docstring, from the labels and the (K-shot) training instances."""
    labels = label_map.labels
    if all(label_roles(label) or label == label_map.no_relation for label in labels):
        rows = [_role_rule(label, label == label_map.no_relation) for label in labels]
        return PtrRules(*(tuple(part) for part in zip(*rows)))
    names = {label: tuple(readable_label_name(label).split()) or ("relation",) for label in labels}
    width = max(len(words) for words in names.values())
    relation = tuple(words + (PAD_WORD,) * (width - len(words)) for words in (names[label] for label in labels))
    head_types = _most_frequent_types(train, "head", label_map)
    tail_types = _most_frequent_types(train, "tail", label_map)
    return PtrRules(tuple(head_types[label] for label in labels), relation, tuple(tail_types[label] for label in labels))


def _role_rule(label: str, no_relation: bool) -> tuple[str, tuple[str, ...], str]:
    if no_relation:
        return NO_RELATION_WORDS
    head, tail = label_roles(label)
    return head, (head, "of", tail), tail


def _most_frequent_types(train: Sequence[RelationInstance], role: str, label_map: LabelMap) -> dict[str, str]:
    counts: dict[str, Counter] = {label: Counter() for label in label_map.labels}
    for instance in train:
        entity_type = getattr(instance, role).type
        if entity_type is not None:
            counts[instance.relation][readable_type_name(entity_type)] += 1
    words = {}
    for label, counter in counts.items():
        ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
        words[label] = ranked[0][0] if ranked and label != label_map.no_relation else GENERIC_TYPE
    return words


def read_rules_file(path: str | Path, label_map: LabelMap) -> PtrRules:
    """PTR's temp.txt: `<idx> <relation> <head word> <relation words...> <tail word>`, tab-separated."""
    path = Path(path)
    rows: dict[str, tuple[str, tuple[str, ...], str]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t")
        if len(fields) < 5:
            raise DataError(path, number, f"a PTR rule needs <idx> <relation> <head word> <relation words> <tail word>, "
                                          f"got {len(fields)} fields")
        rows[fields[1]] = (fields[2], tuple(fields[3:-1]), fields[-1])
    missing = [label for label in label_map.labels if label not in rows]
    if missing:
        raise DataError(path, None, f"no PTR rule for the labels {missing}")
    return PtrRules(*(tuple(part) for part in zip(*(rows[label] for label in label_map.labels))))


def ptr_rules(rules_file: str | Path | None, label_map: LabelMap, train: Sequence[RelationInstance]) -> PtrRules:
    """The rules file's, else derived from the labels and the (K-shot) training set."""
    if rules_file:
        return read_rules_file(rules_file, label_map)
    return derive_rules(label_map, train)


@dataclass(frozen=True)
class PtrVerbalizer:
    """Each mask's candidate words, and each label's word among them, as rows of the
    vocabulary: a word of one piece is that piece's own row (PTR's label words are single
    tokens); a longer one (`other scientific term`, or a word a WordPiece vocabulary splits)
    gets a new row that starts as the mean of its pieces (`extra_words`, appended in order)."""

    candidates: tuple[tuple[str, ...], ...]  # per mask, sorted
    label_word: tuple[tuple[int, ...], ...]  # per label, per mask: the index into candidates[mask]
    rows: tuple[tuple[int, ...], ...]  # per mask, per candidate: its vocabulary row
    extra_words: tuple[str, ...]  # the words that needed a new row, in row order

    @classmethod
    def build(cls, rules: PtrRules, tokenizer, base_size: int) -> "PtrVerbalizer":
        candidates = tuple(tuple(sorted(set(rules.words_at(mask)))) for mask in range(rules.n_masks))
        extra: list[str] = []
        rows = []
        for words in candidates:
            mask_rows = []
            for word in words:
                pieces = text_pieces(tokenizer, word)
                if len(pieces) == 1:
                    mask_rows.append(pieces[0])
                    continue
                if word not in extra:
                    extra.append(word)
                mask_rows.append(base_size + extra.index(word))
            rows.append(tuple(mask_rows))
        label_word = tuple(tuple(candidates[mask].index(rules.words_at(mask)[label]) for mask in range(rules.n_masks))
                           for label in range(len(rules.head)))
        return cls(candidates, label_word, tuple(rows), tuple(extra))


@dataclass
class PtrTemplate:
    tokenizer: object
    rules: PtrRules
    max_seq_len: int = 256

    def __post_init__(self) -> None:
        self._layout = SpecialLayout.of(self.tokenizer)
        self._the = text_pieces(self.tokenizer, "the")

    def encode(self, instance: TokenizedInstance) -> Encoded:
        mask = self.tokenizer.mask_token_id
        head = [p for w in instance.head_words for p in w]
        tail = [p for w in instance.tail_words for p in w]
        n_relation = self.rules.n_masks - 2
        prompt = [*self._the, mask, *head, *[mask] * n_relation, *self._the, mask, *tail]
        budget = self.max_seq_len - len(prompt) - self._layout.n_special
        if budget < 1:
            raise PromptTooLongError(f"instance {instance.id}: the PTR prompt alone takes {len(prompt)} pieces, "
                                     f"more than max_seq_len={self.max_seq_len} allows; raise --max-seq-len")
        ids, types, b_start = self._layout.pair(sentence_pieces(instance, budget), prompt)
        masks = tuple(b_start + i for i, piece in enumerate(prompt) if piece == mask)
        return Encoded(ids, types, masks, instance.label)
