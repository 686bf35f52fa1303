"""Scores for relation classification: TACRED-style micro P/R/F1, the official SemEval-2010 Task 8
macro-F1, and for directed labels (`Type(e1,e2)` / `Type(e2,e1)`) how often the type is right but
the direction wrong."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

from cloce.data.types import LabelMap

SEMEVAL_OTHER = "Other"
_SEMEVAL_RELATION = re.compile(r"^[A-Za-z]+-[A-Za-z]+\(e[12],e[12]\)$")
_DIRECTED = re.compile(r"^(?P<type>.+)\((?P<direction>e1,e2|e2,e1)\)$")


@dataclass(frozen=True)
class RelationScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int  # gold count
    predicted: int


@dataclass(frozen=True)
class DirectionReport:
    """Directed labels only: of the sentences whose gold label is directed, how many were
    predicted as the same relation type in the other direction."""

    directed: int  # sentences whose gold label is `Type(e1,e2)` or `Type(e2,e1)`
    wrong_direction: int  # of them: right type, wrong direction
    wrong_direction_rate: float  # wrong_direction / directed
    undirected_accuracy: float  # accuracy over all sentences, a label's two directions taken as one


@dataclass(frozen=True)
class Evaluation:
    micro_precision: float
    micro_recall: float
    micro_f1: float
    accuracy: float
    macro_f1_semeval: float | None
    per_relation: tuple[RelationScore, ...]
    n: int
    direction: DirectionReport | None = None  # None: the label set has no directed labels

    def to_dict(self) -> dict:
        out = asdict(self)
        out["per_relation"] = [asdict(score) for score in self.per_relation]
        return out

    @classmethod
    def from_dict(cls, obj: dict) -> "Evaluation":
        fields = dict(obj)
        fields["per_relation"] = tuple(RelationScore(**row) for row in obj["per_relation"])
        # Evaluations written before the direction report have none.
        fields["direction"] = DirectionReport(**obj["direction"]) if obj.get("direction") else None
        return cls(**fields)

    def summary(self) -> dict[str, float]:
        """The scalar metrics only, flat, for loggers that take name -> number."""
        out = {
            "micro_f1": self.micro_f1,
            "micro_precision": self.micro_precision,
            "micro_recall": self.micro_recall,
            "accuracy": self.accuracy,
        }
        if self.macro_f1_semeval is not None:
            out["macro_f1_semeval"] = self.macro_f1_semeval
        if self.direction is not None:
            out["wrong_direction_rate"] = self.direction.wrong_direction_rate
            out["undirected_accuracy"] = self.direction.undirected_accuracy
        return out


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0


def _check_lengths(gold: Sequence, pred: Sequence) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} items but pred has {len(pred)}")


def micro_prf(
    gold: Sequence[int], pred: Sequence[int], no_relation_id: int | None
) -> tuple[float, float, float]:
    """Micro precision, recall, F1 as the TACRED scorer computes them: no-relation is never a hit.

    A prediction of no-relation is an abstention (not in the precision denominator); a gold
    no-relation is nothing to find (not in the recall denominator).
    """
    _check_lengths(gold, pred)
    correct = predicted = relevant = 0
    for g, p in zip(gold, pred):
        if p != no_relation_id:
            predicted += 1
            if p == g:
                correct += 1
        if g != no_relation_id:
            relevant += 1
    precision = _ratio(correct, predicted)
    recall = _ratio(correct, relevant)
    return precision, recall, _f1(precision, recall)


def semeval_macro_f1(gold: Sequence[str], pred: Sequence[str]) -> float:
    """The official SemEval-2010 Task 8 score, as a fraction in [0, 1].

    "(9+1)-way evaluation with directionality taken into account", following
    semeval2010_task8_scorer-v1.2.pl: per relation type T (direction stripped, Other excluded),
    a hit needs the full label, direction included; P = hits / predictions of type T in either
    direction (a wrong-direction prediction counts against P), R = hits / gold of type T; the
    score is the mean of the per-type F1 (not the F1 of mean P and mean R).
    Like the official scorer, the mean runs over the types present in the gold labels: that is
    all 9 on the official test set, and a subset lacking a type is not penalised for it.
    Predictions of a type absent from gold therefore count nowhere, as in the official scorer.
    """
    _check_lengths(gold, pred)
    hits: dict[str, int] = {}
    predicted: dict[str, int] = {}
    support: dict[str, int] = {}
    for g, p in zip(gold, pred):
        gold_type, pred_type = _undirected(g), _undirected(p)
        support[gold_type] = support.get(gold_type, 0) + 1
        predicted[pred_type] = predicted.get(pred_type, 0) + 1
        if g == p:
            hits[gold_type] = hits.get(gold_type, 0) + 1
    types = [t for t in support if t != SEMEVAL_OTHER]
    if not types:
        return 0.0
    total = 0.0
    for t in types:
        precision = _ratio(hits.get(t, 0), predicted.get(t, 0))
        recall = _ratio(hits.get(t, 0), support[t])
        total += _f1(precision, recall)
    return total / len(types)


def is_semeval_label_set(labels: Iterable[str]) -> bool:
    """True for SemEval-2010 Task 8 style labels: 'Other' plus directed 'A-B(e1,e2)' relations."""
    labels = list(labels)
    relations = [label for label in labels if label != SEMEVAL_OTHER]
    return (
        SEMEVAL_OTHER in labels
        and bool(relations)
        and all(_SEMEVAL_RELATION.match(label) for label in relations)
    )


def _undirected(label: str) -> str:
    found = _DIRECTED.match(label)
    return found.group("type") if found else label


def has_directed_labels(labels: Iterable[str]) -> bool:
    """True when some label names a direction, `Type(e1,e2)` or `Type(e2,e1)` (SemEval's)."""
    return any(_DIRECTED.match(label) for label in labels)


def direction_report(gold: Sequence[str], pred: Sequence[str]) -> DirectionReport:
    """Right type, wrong direction: gold `T(e1,e2)` predicted `T(e2,e1)` or the reverse. The
    accuracy ignoring direction counts those as hits (every other label as it is)."""
    _check_lengths(gold, pred)
    directed = wrong = undirected_hits = 0
    for g, p in zip(gold, pred):
        same_type = _undirected(g) == _undirected(p)
        undirected_hits += same_type
        if _DIRECTED.match(g):
            directed += 1
            wrong += same_type and g != p
    return DirectionReport(directed, wrong, _ratio(wrong, directed), _ratio(undirected_hits, len(gold)))


def _check_ids(ids: Sequence[int], n_labels: int, name: str) -> None:
    for i, label_id in enumerate(ids):
        if not 0 <= label_id < n_labels:
            raise ValueError(f"{name}[{i}] = {label_id} is not a label id (0..{n_labels - 1})")


def evaluate(gold_ids: Sequence[int], pred_ids: Sequence[int], label_map: LabelMap) -> Evaluation:
    _check_lengths(gold_ids, pred_ids)
    _check_ids(gold_ids, len(label_map), "gold_ids")
    _check_ids(pred_ids, len(label_map), "pred_ids")

    micro_p, micro_r, micro_f = micro_prf(gold_ids, pred_ids, label_map.no_relation_id)

    hits = [0] * len(label_map)
    support = [0] * len(label_map)
    predicted = [0] * len(label_map)
    for g, p in zip(gold_ids, pred_ids):
        support[g] += 1
        predicted[p] += 1
        if g == p:
            hits[g] += 1
    per_relation = []
    for label_id, label in enumerate(label_map.labels):
        precision = _ratio(hits[label_id], predicted[label_id])
        recall = _ratio(hits[label_id], support[label_id])
        per_relation.append(
            RelationScore(label, precision, recall, _f1(precision, recall), support[label_id], predicted[label_id])
        )

    gold_names = [label_map.labels[i] for i in gold_ids]
    pred_names = [label_map.labels[i] for i in pred_ids]
    macro = semeval_macro_f1(gold_names, pred_names) if is_semeval_label_set(label_map.labels) else None
    direction = direction_report(gold_names, pred_names) if has_directed_labels(label_map.labels) else None

    return Evaluation(
        micro_precision=micro_p,
        micro_recall=micro_r,
        micro_f1=micro_f,
        accuracy=_ratio(sum(hits), len(gold_ids)),
        macro_f1_semeval=macro,
        per_relation=tuple(per_relation),
        n=len(gold_ids),
        direction=direction,
    )


def format_report(evaluation: Evaluation) -> str:
    """A fixed-width per-relation table followed by the summary metrics, for a text file."""
    width = max([len("relation")] + [len(s.label) for s in evaluation.per_relation])
    header = f"{'relation':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}  {'predicted':>9}"
    lines = [header, "-" * len(header)]
    for s in evaluation.per_relation:
        lines.append(
            f"{s.label:<{width}}  {s.precision:>9.4f}  {s.recall:>9.4f}  {s.f1:>9.4f}"
            f"  {s.support:>7d}  {s.predicted:>9d}"
        )
    lines.append("")
    summary = evaluation.summary()
    key_width = max(len(key) for key in summary)
    lines.extend(f"{key:<{key_width}}  {value:.4f}" for key, value in summary.items())
    lines.append(f"{'n':<{key_width}}  {evaluation.n}")
    if evaluation.direction is not None:
        d = evaluation.direction
        lines.append(f"{'wrong_direction':<{key_width}}  {d.wrong_direction} of {d.directed} directed gold "
                     "(right type, wrong direction)")
    return "\n".join(lines) + "\n"
