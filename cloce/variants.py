"""The five variants of METHOD.md and the paper's two prompt baselines (PTR, KnowPrompt): one
table; adding a variant is adding one entry."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Variant:
    name: str
    # soft-label cloze over [MASK]; entity-marker pooled linear head; PTR's sub-prompts of label
    # words (cloce/ptr.py); KnowPrompt's virtual type and answer words with its KE loss (cloce/knowprompt.py)
    head: Literal["prompt", "marker", "ptr", "knowprompt"]
    inject_types: bool  # entity-type slots in the template (KI)
    # What the contrastive step trains, if anything: the embedding layer (CLoCE-S) or embedding + encoder (CLoCE-D).
    contrastive: Literal["none", "embedding", "encoder"]
    paper_row: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("finetune", head="marker", inject_types=True, contrastive="none", paper_row="FINE-TUNING"),
        # inject_types: the CLoCE template's type slots, which neither has (each types the entities its own way).
        Variant("ptr", head="ptr", inject_types=False, contrastive="none", paper_row="PTR"),
        Variant("knowprompt", head="knowprompt", inject_types=False, contrastive="none", paper_row="KNOWPROMPT"),
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
