"""KnowPrompt (Chen et al. 2022, "KnowPrompt: Knowledge-aware Prompt-tuning with Synergistic
Optimization for Relation Extraction"): its template, the virtual words' start and the
implicit structured constraint (the KE loss).

    [CLS] @ head @ ... # tail # ... [SEP] [sub] head [sub] [MASK] [obj] tail [obj] [SEP]

- `[sub]` and `[obj]` are learnable virtual type words around the entities: two new rows
  that start as the training set's head (tail) entity types, each type word weighted by how
  often it is the head's (tail's) type (`type_prior_rows`); with no types (SemEval) both
  start as the generic type word.
- One virtual answer word per relation, scored at [MASK] by the tied decoder; it starts as
  the mean of the label's own words (the soft labels of cloce/vocab.py).
- The KE loss: `s + r ≈ o` for the gold triple, with s and o the mean last-layer states of the
  head's and tail's pieces in the prompt and r the state at [MASK]; a corrupted triple (s, o
  from a random span of the same sentence) must not hold:
  `L_KE = -log σ(γ - d(s, r, o)) - log σ(d(s', r, o') - γ)`, `d = ||s + r - o||_2`, γ = 0.3,
  added to the cross-entropy with weight λ (KnowPrompt's scripts: 0.001).
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import torch
from torch.nn import functional as F

from cloce.data.types import RelationInstance
from cloce.encoding import Encoded, SpecialLayout, TokenizedInstance, text_pieces
from cloce.prompt import PromptTooLongError, sentence_pieces
from cloce.vocab import GENERIC_TYPE, readable_type_name

TYPE_WORDS = ("[sub]", "[obj]")  # the two virtual type words: their rows come first, then the answer words
KE_MARGIN = 0.3  # γ: KnowPrompt's --t_gamma default, which its scripts keep


def type_counts(instances: Sequence[RelationInstance]) -> dict[str, Counter]:
    """How often each entity type is the head's and the tail's, over the training instances."""
    counts = {"head": Counter(), "tail": Counter()}
    for instance in instances:
        for role in counts:
            counts[role][getattr(instance, role).type or GENERIC_TYPE] += 1
    return counts


def type_prior_rows(embeddings: torch.nn.Embedding, tokenizer, counts: dict[str, Counter] | None) -> torch.Tensor:
    """The rows [sub] and [obj] start from: per role, the frequency-weighted mean of the type
    words' embeddings (a type word of several pieces: their mean). No counts: the generic type."""
    from cloce.backbone import embedding_rows_from_names

    rows = []
    for role in ("head", "tail"):
        counter = (counts or {}).get(role) or Counter({GENERIC_TYPE: 1})
        words = embedding_rows_from_names(embeddings, tokenizer, [readable_type_name(t) for t in counter]).float()
        weights = torch.tensor(list(counter.values()), dtype=torch.float32)
        rows.append((weights[:, None] * words).sum(0) / weights.sum())
    return torch.stack(rows)


@dataclass
class KnowPromptTemplate:
    """Anchors: ([MASK], head start, head end, tail start, tail end), ends exclusive, the
    entities' pieces inside the prompt (what the KE loss averages)."""

    tokenizer: object
    sub_id: int
    obj_id: int
    max_seq_len: int = 256

    def __post_init__(self) -> None:
        self._layout = SpecialLayout.of(self.tokenizer)
        self._markers = (tuple(text_pieces(self.tokenizer, "@")), tuple(text_pieces(self.tokenizer, "#")))

    def encode(self, instance: TokenizedInstance) -> Encoded:
        head = [p for w in instance.head_words for p in w]
        tail = [p for w in instance.tail_words for p in w]
        prompt = [self.sub_id, *head, self.sub_id, self.tokenizer.mask_token_id, self.obj_id, *tail, self.obj_id]
        budget = self.max_seq_len - len(prompt) - self._layout.n_special
        if budget < 1:
            raise PromptTooLongError(f"instance {instance.id}: the KnowPrompt prompt alone takes {len(prompt)} "
                                     f"pieces, more than max_seq_len={self.max_seq_len} allows; raise --max-seq-len")
        ids, types, b = self._layout.pair(sentence_pieces(instance, budget, self._markers), prompt)
        mask_at = b + len(head) + 2
        tail_at = mask_at + 2
        return Encoded(ids, types, (mask_at, b + 1, b + 1 + len(head), tail_at, tail_at + len(tail)), instance.label)


def span_means(states: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Per row, the mean of states[row, start:end]."""
    positions = torch.arange(states.size(1), device=states.device)
    inside = ((positions >= starts[:, None]) & (positions < ends[:, None])).to(states.dtype)
    return (states * inside[..., None]).sum(1) / inside.sum(1, keepdim=True).clamp(min=1)


def ke_distance(s: torch.Tensor, r: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Per row, ||s + r - o||: zero exactly where the triple holds."""
    return torch.linalg.vector_norm(s + r - o, dim=-1)


def ke_loss(positive: torch.Tensor, negative: torch.Tensor, margin: float = KE_MARGIN) -> torch.Tensor:
    """The mean over rows of -log σ(γ - d+) - log σ(d- - γ)."""
    return (-F.logsigmoid(margin - positive) - F.logsigmoid(negative - margin)).mean()


def corrupted_spans(lengths: Sequence[int], keys: Sequence[int], epoch: int) -> torch.Tensor:
    """Per row, two random spans (1-5 pieces) inside its real pieces, [CLS] and the last piece
    excluded, as KnowPrompt draws its negative head and tail. A function of (instance, epoch)
    only: the same on any number of workers, and after a resume."""
    spans = []
    for length, key in zip(lengths, keys):
        rng = random.Random(f"cloce-knowprompt-negatives:{key}:{epoch}")
        row = []
        for _ in range(2):
            start = rng.randint(1, max(1, length - 2))
            row += [start, min(length - 1, start + rng.randint(1, 5))]
        spans.append(row)
    return torch.tensor(spans, dtype=torch.long)
