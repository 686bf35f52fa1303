"""Virtual tokens: extra embedding rows appended after the backbone's own vocabulary.

Type slots (one token per entity type) and soft labels (one token per relation) are
trainable rows of the word-embedding matrix, so "the embedding layer" that CLoCE-S trains
includes them, and a tied MLM decoder scores the label rows for free.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Used when the data has no entity types (SemEval): knowledge injection falls back to it.
GENERIC_TYPE = "entity"


def readable_type_name(entity_type: str) -> str:
    """`STATE_OR_PROVINCE` -> "state or province"."""
    return entity_type.replace("_", " ").replace("-", " ").lower().strip()


def readable_label_name(label: str) -> str:
    """`per:countries_of_residence` -> "countries of residence"; `Cause-Effect(e1,e2)` -> "cause effect".

    Both directions of a SemEval relation read the same: their soft labels start equal and
    are told apart by training (the direction is in the template's head/tail order).
    """
    name = re.sub(r"\(e[12],e[12]\)$", "", label)
    name = name.split(":", 1)[1] if re.match(r"^(per|org):", name) else name
    return re.sub(r"[_\-/:]+", " ", name).lower().strip()


@dataclass(frozen=True)
class VirtualVocab:
    """Ids of the virtual tokens: types first, then labels, after `base_size` real ids."""

    base_size: int
    type_names: tuple[str, ...]
    label_names: tuple[str, ...]

    @property
    def size(self) -> int:
        return self.base_size + len(self.type_names) + len(self.label_names)

    def type_id(self, entity_type: str | None) -> int:
        name = GENERIC_TYPE if entity_type is None else entity_type
        try:
            return self.base_size + self.type_names.index(name)
        except ValueError:
            raise KeyError(f"entity type {name!r} is not in the type vocabulary {self.type_names}") from None

    @property
    def label_ids(self) -> list[int]:
        start = self.base_size + len(self.type_names)
        return list(range(start, start + len(self.label_names)))

    def readable_names(self) -> list[str]:
        """The text whose word pieces initialise each virtual row, in id order."""
        return [readable_type_name(t) for t in self.type_names] + [
            readable_label_name(label) for label in self.label_names
        ]

    def to_json(self) -> dict:
        return {"base_size": self.base_size, "type_names": list(self.type_names), "label_names": list(self.label_names)}

    @classmethod
    def from_json(cls, obj: dict) -> "VirtualVocab":
        return cls(obj["base_size"], tuple(obj["type_names"]), tuple(obj["label_names"]))
