"""The CLoCE cloze template, with entity types injected as virtual type tokens.

    [CLS] sentence [SEP] the relation of [T_h] head and [T_t] tail is [MASK] [SEP]

The paper's "the relation of [MASK]1 [MASK]2 and [MASK]3 [MASK]4 is [MASK]5": slots 1
and 3 are the type tokens, 2 and 4 the entity mentions. Only the sentence is ever
truncated; the prompt, with [MASK], always stays whole.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from cloce.encoding import Encoded, SpecialLayout, TokenizedInstance, keep_window, text_pieces
from cloce.vocab import VirtualVocab


class PromptTooLongError(ValueError):
    pass


@dataclass
class PromptTemplate:
    tokenizer: object
    vocab: VirtualVocab
    use_types: bool
    max_seq_len: int = 256
    _phrases: dict[str, list[int]] = field(init=False, repr=False)
    _layout: SpecialLayout = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._layout = SpecialLayout.of(self.tokenizer)
        self._phrases = {p: text_pieces(self.tokenizer, p) for p in ("the relation of", "and", "is")}

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
        sentence = sentence_pieces(instance, budget)
        ids, types, b_start = self._layout.pair(sentence, prompt)
        return Encoded(ids, types, (b_start + len(prompt) - 1,), instance.label)


def sentence_pieces(instance: TokenizedInstance, budget: int) -> list[int]:
    """The sentence's pieces, cut to `budget` around the two entities when too long."""
    starts = [0]
    for word in instance.words:
        starts.append(starts[-1] + len(word))
    lo = min(starts[instance.head.start], starts[instance.tail.start])
    hi = max(starts[instance.head.end], starts[instance.tail.end])
    flat = [p for w in instance.words for p in w]
    start, end = keep_window(len(flat), budget, (lo, hi))
    return flat[start:end]
