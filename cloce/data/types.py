"""The data model every other module speaks: one relation instance, its entities, the labels."""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable

# Names the no-relation label goes by in the data sets we read (TACRED, SemEval, NYT-style).
NO_RELATION_NAMES = ("no_relation", "Other", "NA", "None")


class DataError(ValueError):
    """Bad input data. The message always names the file, the line and what is wrong."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):
        # Raised inside a Ray trial, it is pickled back to the driver: keep its arguments.
        return type(self), (self.path, self.line, self.problem)


@dataclass(frozen=True)
class EntityMention:
    """A token span [start, end) of the sentence, with its entity type when the data has one."""

    start: int
    end: int  # exclusive
    type: str | None = None

    def tokens(self, sentence: tuple[str, ...]) -> tuple[str, ...]:
        return sentence[self.start : self.end]


@dataclass(frozen=True)
class RelationInstance:
    id: str
    tokens: tuple[str, ...]
    head: EntityMention
    tail: EntityMention
    relation: str

    @property
    def head_tokens(self) -> tuple[str, ...]:
        return self.head.tokens(self.tokens)

    @property
    def tail_tokens(self) -> tuple[str, ...]:
        return self.tail.tokens(self.tokens)


@dataclass(frozen=True)
class LabelMap:
    """Relation names in id order; `no_relation` is the label the metric ignores."""

    labels: tuple[str, ...]
    no_relation: str | None

    def __post_init__(self) -> None:
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("label map has duplicate labels")
        if self.no_relation is not None and self.no_relation not in self.labels:
            raise ValueError(f"no-relation label {self.no_relation!r} is not among the labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: str) -> bool:
        return label in self._index

    @cached_property
    def _index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}

    def id_of(self, label: str) -> int:
        return self._index[label]

    @property
    def no_relation_id(self) -> int | None:
        return None if self.no_relation is None else self.id_of(self.no_relation)

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> "LabelMap":
        """Sorted label order, the no-relation label (when present) first, as rel2id files have it."""
        unique = sorted(set(labels))
        no_relation = next((n for n in NO_RELATION_NAMES if n in unique), None)
        if no_relation is not None:
            unique.remove(no_relation)
            unique.insert(0, no_relation)
        return cls(tuple(unique), no_relation)

    @classmethod
    def from_rel2id(cls, path: str | Path) -> "LabelMap":
        try:
            mapping = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, f"malformed JSON: {err.msg}") from err
        if not isinstance(mapping, dict) or not all(isinstance(v, int) for v in mapping.values()):
            raise DataError(path, None, "rel2id must be a JSON object mapping label -> integer id")
        ids = sorted(mapping.values())
        if ids != list(range(len(ids))):
            raise DataError(path, None, f"rel2id ids must be 0..{len(ids) - 1} without gaps")
        labels = tuple(sorted(mapping, key=mapping.__getitem__))
        no_relation = next((n for n in NO_RELATION_NAMES if n in mapping), None)
        return cls(labels, no_relation)

    def to_json(self) -> dict:
        return {"labels": list(self.labels), "no_relation": self.no_relation}

    @classmethod
    def from_json(cls, obj: dict) -> "LabelMap":
        return cls(tuple(obj["labels"]), obj["no_relation"])
