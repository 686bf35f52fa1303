"""The five variants of METHOD.md: one table; adding a variant is adding one entry."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Variant:
    name: str
    head: Literal["prompt", "marker"]  # soft-label cloze over [MASK], or entity-marker pooled linear head
    inject_types: bool  # entity-type slots in the template (KI)
    # What the contrastive step trains, if anything: the embedding layer (CLoCE-S) or embedding + encoder (CLoCE-D).
    contrastive: Literal["none", "embedding", "encoder"]
    paper_row: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("finetune", head="marker", inject_types=True, contrastive="none", paper_row="FINE-TUNING"),
        Variant("prompt", head="prompt", inject_types=False, contrastive="none", paper_row="(ablation)"),
        Variant("prompt_ki", head="prompt", inject_types=True, contrastive="none", paper_row="KI"),
        Variant("cloce_s", head="prompt", inject_types=True, contrastive="embedding", paper_row="CLoCE-S"),
        Variant("cloce_d", head="prompt", inject_types=True, contrastive="encoder", paper_row="CLoCE-D"),
    )
}


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; allowed: {', '.join(VARIANTS)}") from None
