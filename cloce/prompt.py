"""The CLoCE cloze template, with entity types injected as virtual type tokens.

    relation_of: [CLS] sentence [SEP] the relation of [T_h] head and [T_t] tail is [MASK] [SEP]
    role_of:     [CLS] sentence [SEP] [T_h] head is the [MASK] of [T_t] tail [SEP]

relation_of is the paper's "the relation of [MASK]1 [MASK]2 and [MASK]3 [MASK]4 is [MASK]5":
slots 1 and 3 are the type tokens, 2 and 4 the entity mentions. role_of (opt-in,
TrainConfig.template) asks for the head's role instead, which names the direction of a
SemEval relation (pairs with TrainConfig.label_init="role"). The type tokens appear only
when the variant injects types. With `sentence_markers`, the sentence also carries
`@ head @` and `# tail #` (off by default). Only the sentence is ever truncated; the
prompt, with [MASK], always stays whole.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cloce.encoding import Encoded, SpecialLayout, TokenizedInstance, Word, keep_window, text_pieces
from cloce.markers import mark_entities
from cloce.vocab import VirtualVocab


class PromptTooLongError(ValueError):
    pass


HEAD, TAIL, MASK = "<head>", "<tail>", "<mask>"  # slots; every other part is a fixed phrase
PromptWording = Literal["relation_of", "role_of"]
# A new wording is one entry here; an entity slot carries its type token when types are injected.
WORDINGS: dict[str, tuple[str, ...]] = {
    "relation_of": ("the relation of", HEAD, "and", TAIL, "is", MASK),
    "role_of": (HEAD, "is the", MASK, "of", TAIL),
}


@dataclass
class PromptTemplate:
    tokenizer: object
    vocab: VirtualVocab
    use_types: bool
    max_seq_len: int = 256
    # `@ head @ ... # tail #` in the sentence too (TrainConfig.sentence_markers); not the paper's.
    sentence_markers: bool = False
    wording: PromptWording = "relation_of"  # TrainConfig.template
    _phrases: dict[str, list[int]] = field(init=False, repr=False)
    _layout: SpecialLayout = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.wording not in WORDINGS:
            raise ValueError(f"template: {self.wording!r} is not one of {', '.join(WORDINGS)}")
        self._layout = SpecialLayout.of(self.tokenizer)
        parts = WORDINGS[self.wording]
        self._phrases = {p: text_pieces(self.tokenizer, p) for p in parts if p not in (HEAD, TAIL, MASK)}
        self._markers = (tuple(text_pieces(self.tokenizer, "@")), tuple(text_pieces(self.tokenizer, "#")))

    def prompt_ids(self, instance: TokenizedInstance) -> tuple[list[int], int]:
        """The prompt's pieces, and where [MASK] is among them."""
        slots = {HEAD: self._entity(instance.head.type, instance.head_words),
                 TAIL: self._entity(instance.tail.type, instance.tail_words),
                 MASK: [self.tokenizer.mask_token_id]}
        ids: list[int] = []
        mask_at = 0
        for part in WORDINGS[self.wording]:
            if part == MASK:
                mask_at = len(ids)
            ids += slots[part] if part in slots else self._phrases[part]
        return ids, mask_at

    def _entity(self, entity_type: str | None, words: tuple[Word, ...]) -> list[int]:
        type_token = [self.vocab.type_id(entity_type)] if self.use_types else []
        return type_token + [p for w in words for p in w]

    def encode(self, instance: TokenizedInstance) -> Encoded:
        prompt, mask_at = self.prompt_ids(instance)
        budget = self.max_seq_len - len(prompt) - self._layout.n_special
        if budget < 1:
            raise PromptTooLongError(
                f"instance {instance.id}: the prompt alone takes {len(prompt)} pieces, "
                f"more than max_seq_len={self.max_seq_len} allows; raise --max-seq-len"
            )
        sentence = sentence_pieces(instance, budget, self._markers if self.sentence_markers else None)
        ids, types, b_start = self._layout.pair(sentence, prompt)
        return Encoded(ids, types, (b_start + mask_at,), instance.label)


def sentence_pieces(instance: TokenizedInstance, budget: int, markers: tuple[Word, Word] | None = None) -> list[int]:
    """The sentence's pieces, with `markers` (head's, tail's) around the entities when given,
    cut to `budget` around the two entities when too long."""
    words = list(instance.words)
    spans = {"head": (instance.head.start, instance.head.end), "tail": (instance.tail.start, instance.tail.end)}
    if markers:
        words, opening = mark_entities(instance, {"head": [markers[0]], "tail": [markers[1]]},
                                       {"head": markers[0], "tail": markers[1]})
        spans = {role: (opening[role], opening[role] + end - start + 2) for role, (start, end) in spans.items()}
    starts = [0]
    for word in words:
        starts.append(starts[-1] + len(word))
    lo = min(starts[start] for start, _ in spans.values())
    hi = max(starts[end] for _, end in spans.values())
    flat = [p for w in words for p in w]
    start, end = keep_window(len(flat), budget, (lo, hi))
    return flat[start:end]
