"""Entity markers for the fine-tuning baseline: `@ head @ ... # tail #` (typed when the data has types).

The "entity marker (punct)" input of Zhou & Chen (2021): plain punctuation the backbone
already knows, so no new embedding rows; with types, `@ * person * head @`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cloce.encoding import Encoded, SpecialLayout, TokenizedInstance, Word, keep_window, text_pieces
from cloce.vocab import readable_type_name


@dataclass
class EntityMarkerTemplate:
    tokenizer: object
    use_types: bool
    max_seq_len: int = 256
    _layout: SpecialLayout = field(init=False, repr=False)
    _mark: dict[str, Word] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._layout = SpecialLayout.of(self.tokenizer)
        self._mark = {m: tuple(text_pieces(self.tokenizer, m)) for m in ("@", "#", "*", "^")}

    def _open(self, outer: str, inner: str, entity_type: str | None) -> list[Word]:
        if not self.use_types or entity_type is None:
            return [self._mark[outer]]
        type_words = [tuple(text_pieces(self.tokenizer, readable_type_name(entity_type)))]
        return [self._mark[outer], self._mark[inner], *type_words, self._mark[inner]]

    def encode(self, instance: TokenizedInstance) -> Encoded:
        openers = {"head": self._open("@", "*", instance.head.type), "tail": self._open("#", "^", instance.tail.type)}
        marked, opening = mark_entities(instance, openers, {"head": self._mark["@"], "tail": self._mark["#"]})
        starts = [0]
        for word in marked:
            starts.append(starts[-1] + len(word))
        head_at, tail_at = starts[opening["head"]], starts[opening["tail"]]
        flat = [p for w in marked for p in w]
        budget = self.max_seq_len - len(self._layout.prefix) - len(self._layout.single_suffix)
        last_piece = max(head_at, tail_at) + 1
        start, end = keep_window(len(flat), budget, (min(head_at, tail_at), last_piece))
        ids, types = self._layout.single(flat[start:end])
        offset = len(self._layout.prefix) - start
        # Entities further apart than the budget: the far marker is cut, read the window's edge instead.
        anchors = tuple(min(at + offset, len(ids) - 2) for at in (head_at, tail_at))
        return Encoded(ids, types, anchors, instance.label)


def mark_entities(instance: TokenizedInstance, openers: dict[str, list[Word]],
                  closers: dict[str, Word]) -> tuple[list[Word], dict[str, int]]:
    """The sentence's words with `openers[role]` before and `closers[role]` after each entity
    (role: head, tail); also where each opener starts, in words."""
    marked: list[Word] = []
    opening: dict[str, int] = {}
    spans = sorted([("head", instance.head), ("tail", instance.tail)], key=lambda s: s[1].start)
    cursor = 0
    for role, span in spans:
        marked.extend(instance.words[cursor : span.start])
        opening[role] = len(marked)
        marked.extend(openers[role])
        marked.extend(instance.words[span.start : span.end])
        marked.append(closers[role])
        cursor = max(cursor, span.end)
    marked.extend(instance.words[cursor:])
    return marked, opening
