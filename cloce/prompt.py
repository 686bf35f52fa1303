"""The CLoCE cloze template, with entity types injected as virtual type tokens.

    [CLS] sentence [SEP] the relation of [T_h] head and [T_t] tail is [MASK] [SEP]

With `sentence_markers`, the sentence also carries `@ head @` and `# tail #` (off by default).

The paper's "the relation of [MASK]1 [MASK]2 and [MASK]3 [MASK]4 is [MASK]5": slots 1
and 3 are the type tokens, 2 and 4 the entity mentions. Only the sentence is ever
truncated; the prompt, with [MASK], always stays whole.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cloce.encoding import Encoded, SpecialLayout, TokenizedInstance, Word, keep_window, text_pieces
from cloce.markers import mark_entities
from cloce.vocab import VirtualVocab


class PromptTooLongError(ValueError):
    pass


@dataclass
class PromptTemplate:
    tokenizer: object
    vocab: VirtualVocab
    use_types: bool
    max_seq_len: int = 256
    # `@ head @ ... # tail #` in the sentence too (TrainConfig.sentence_markers); not the paper's.
    sentence_markers: bool = False
    _phrases: dict[str, list[int]] = field(init=False, repr=False)
    _layout: SpecialLayout = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._layout = SpecialLayout.of(self.tokenizer)
        self._phrases = {p: text_pieces(self.tokenizer, p) for p in ("the relation of", "and", "is")}
        self._markers = (tuple(text_pieces(self.tokenizer, "@")), tuple(text_pieces(self.tokenizer, "#")))

    def prompt_ids(self, instance: TokenizedInstance) -> list[int]:
        head = [p for w in instance.head_words for p in w]
        tail = [p for w in instance.tail_words for p in w]
        head_type = [self.vocab.type_id(instance.head.type)] if self.use_types else []
        tail_type = [self.vocab.type_id(instance.tail.type)] if self.use_types else []
        return (
            self._phrases["the relation of"] + head_type + head
            + self._phrases["and"] + tail_type + tail
            + self._phrases["is"] + [self.tokenizer.mask_token_id]
        )

    def encode(self, instance: TokenizedInstance) -> Encoded:
        prompt = self.prompt_ids(instance)
        budget = self.max_seq_len - len(prompt) - self._layout.n_special
        if budget < 1:
            raise PromptTooLongError(
                f"instance {instance.id}: the prompt alone takes {len(prompt)} pieces, "
                f"more than max_seq_len={self.max_seq_len} allows; raise --max-seq-len"
            )
        sentence = sentence_pieces(instance, budget, self._markers if self.sentence_markers else None)
        ids, types, b_start = self._layout.pair(sentence, prompt)
        return Encoded(ids, types, (b_start + len(prompt) - 1,), instance.label)


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
