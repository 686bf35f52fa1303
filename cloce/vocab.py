"""Virtual tokens: extra embedding rows appended after the backbone's own vocabulary.

Type slots (one token per entity type) and soft labels (one token per relation) are
trainable rows of the word-embedding matrix, so "the embedding layer" that CLoCE-S trains
includes them, and a tied MLM decoder scores the label rows for free.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# Used when the data has no entity types (SemEval): knowledge injection falls back to it.
GENERIC_TYPE = "entity"


def readable_type_name(entity_type: str) -> str:
    """`STATE_OR_PROVINCE` -> "state or province"."""
    return entity_type.replace("_", " ").replace("-", " ").lower().strip()


def readable_label_name(label: str) -> str:
    """`per:countries_of_residence` -> "countries of residence"; `Cause-Effect(e1,e2)` -> "cause effect".

    Both directions of a SemEval relation read the same: their soft labels start equal and
    are told apart by training (the direction is in the template's head/tail order), unless
    they start from role_label_name.
    """
    name = re.sub(r"\(e[12],e[12]\)$", "", label)
    name = name.split(":", 1)[1] if re.match(r"^(per|org):", name) else name
    return re.sub(r"[_\-/:]+", " ", name).lower().strip()


# The readers make the head the first mention of a SemEval sentence (e1, OpenNRE's "h") and
# the tail e2: `X-Y(e1,e2)` says the head plays X, `X-Y(e2,e1)` that it plays Y.
_DIRECTED = re.compile(r"^([^-()]+)-([^-()]+)\((e1,e2|e2,e1)\)$")


def label_roles(label: str) -> tuple[str, str] | None:
    """The head's and the tail's roles of a directed label: `Cause-Effect(e1,e2)` -> ("cause",
    "effect"), `Cause-Effect(e2,e1)` -> ("effect", "cause"); None for a label without a direction."""
    directed = _DIRECTED.match(label)
    if not directed:
        return None
    first, second, order = directed.groups()
    roles = (readable_label_name(first), readable_label_name(second))
    return roles if order == "e1,e2" else roles[::-1]


def role_label_name(label: str) -> str:
    """The head's role: `Cause-Effect(e1,e2)` -> "cause", `Cause-Effect(e2,e1)` -> "effect".

    The two directions start apart (a mean of the same word pieces cannot tell them apart);
    a label without a direction suffix (`Other`, `per:founded_by`) reads as readable_label_name.
    """
    roles = label_roles(label)
    return roles[0] if roles else readable_label_name(label)


LabelInit = Literal["name", "role"]
LABEL_NAMERS = {"name": readable_label_name, "role": role_label_name}


@dataclass(frozen=True)
class VirtualVocab:
    """Ids of the virtual tokens: types first, then labels, after `base_size` real ids."""

    base_size: int
    type_names: tuple[str, ...]
    label_names: tuple[str, ...]
    label_init: LabelInit = "name"  # which text a soft label starts from (TrainConfig.label_init)

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
        label_name = LABEL_NAMERS[self.label_init]
        return [readable_type_name(t) for t in self.type_names] + [label_name(label) for label in self.label_names]

    def to_json(self) -> dict:
        return {"base_size": self.base_size, "type_names": list(self.type_names), "label_names": list(self.label_names),
                "label_init": self.label_init}

    @classmethod
    def from_json(cls, obj: dict) -> "VirtualVocab":
        # Saved before label_init existed: those soft labels started from their names.
        return cls(obj["base_size"], tuple(obj["type_names"]), tuple(obj["label_names"]),
                   obj.get("label_init", "name"))
