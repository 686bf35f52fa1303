"""Read relation instances from OpenNRE/KnowPrompt jsonl and TACRED json files.

Every record is checked as it is read; the first bad one stops the read with a DataError
that names the file, the record's line and what to fix. Nothing is skipped silently.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator

from .types import DataError, EntityMention, LabelMap, RelationInstance

OPENNRE = "opennre"
TACRED = "tacred"
FORMATS = (OPENNRE, TACRED)


class _BadRecord(Exception):
    """A problem with one record; read_instances adds the file and line."""


def read_instances(
    path: str | Path, fmt: str = "auto", label_map: LabelMap | None = None
) -> list[RelationInstance]:
    """All instances of one file, in file order. With a label map, unknown relations are errors."""
    return [instance for _, instance in read_records(path, fmt, label_map)]


def read_records(
    path: str | Path, fmt: str = "auto", label_map: LabelMap | None = None, unlabeled_as: str | None = None
) -> list[tuple[dict, RelationInstance]]:
    """Each raw record with its instance. `unlabeled_as` lets records without a relation
    through (prediction input), with that placeholder as their relation."""
    path = Path(path)
    text = _read_text(path)
    fmt = _detect(path, text) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {FORMATS}")
    parse = _PARSERS[fmt]
    instances = []
    for line, record in _records(path, text):
        try:
            if not isinstance(record, dict):
                raise _BadRecord(f"expected a JSON object, got {type(record).__name__}")
            record_id = record.get("id")
            labelled = record if unlabeled_as is None or "relation" in record else {**record, "relation": unlabeled_as}
            instance = parse(labelled, f"{path.stem}:{line}" if record_id is None else record_id)
            if label_map is not None and instance.relation not in label_map:
                raise _BadRecord(_unknown_label_problem(instance.relation, label_map))
        except _BadRecord as bad:
            raise DataError(path, line, str(bad)) from None
        instances.append((record, instance))
    return instances


def detect_format(path: str | Path) -> str:
    """'tacred' or 'opennre', from the file's layout and the keys of its first record."""
    path = Path(path)
    return _detect(path, _read_text(path))


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte-order mark
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except UnicodeDecodeError as err:
        raise DataError(path, None, f"not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not text.strip():
        raise DataError(path, None, "file is empty: expected JSON records")
    return text


def _detect(path: Path, text: str) -> str:
    line, first = next(_records(path, text))
    keys = set(first) if isinstance(first, dict) else set()
    if "subj_start" in keys:
        return TACRED
    if {"h", "t"} <= keys:
        return OPENNRE
    if text.lstrip().startswith("["):
        return TACRED  # a JSON array is TACRED's layout; its reader names any missing key
    raise DataError(
        path,
        line,
        f"cannot tell the format: the first record has keys {sorted(keys)}, expected "
        "'subj_start' (TACRED) or 'h' and 't' (OpenNRE); pass fmt='tacred' or fmt='opennre'",
    )


def _records(path: Path, text: str) -> Iterator[tuple[int, object]]:
    """(line, decoded record) pairs, from a JSON array or from one JSON value a line."""
    if text.lstrip().startswith("["):
        yield from _array_records(path, text)
        return
    # split("\n"), not splitlines(): a JSON string may hold U+2028 and friends unescaped.
    for number, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as err:
            raise DataError(path, number, f"malformed JSON: {err.msg} (column {err.colno})") from None


def _array_records(path: Path, text: str) -> Iterator[tuple[int, object]]:
    # Element by element, so a bad record is reported at its own line, not the file's first.
    decoder = json.JSONDecoder()

    counted_to, lines_before = 0, 0

    def line_of(offset: int) -> int:
        # Offsets only grow: count newlines since the last call, not from the top (TACRED is big).
        nonlocal counted_to, lines_before
        lines_before += text.count("\n", counted_to, offset)
        counted_to = offset
        return lines_before + 1

    def skip_space(offset: int) -> int:
        while offset < len(text) and text[offset].isspace():
            offset += 1
        return offset

    position = skip_space(text.index("[") + 1)
    if position < len(text) and text[position] == "]":
        raise DataError(path, line_of(position), "the JSON array is empty: expected records")
    while True:
        try:
            record, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, f"malformed JSON: {err.msg} (column {err.colno})") from None
        yield line_of(position), record
        position = skip_space(end)
        if position < len(text) and text[position] == ",":
            position = skip_space(position + 1)
        elif position < len(text) and text[position] == "]":
            break
        else:
            raise DataError(path, line_of(position), "malformed JSON: expected ',' or ']' after a record")
    trailing = skip_space(position + 1)
    if trailing < len(text):
        raise DataError(path, line_of(trailing), "malformed JSON: extra data after the closing ']'")


def _from_opennre(record: dict, instance_id: object) -> RelationInstance:
    tokens = _tokens(record, "token")
    head = _opennre_mention(record, "h", "head", len(tokens))
    tail = _opennre_mention(record, "t", "tail", len(tokens))
    return RelationInstance(str(instance_id), tokens, head, tail, _relation(record))


def _opennre_mention(record: dict, key: str, role: str, n_tokens: int) -> EntityMention:
    entity = _require(record, key)
    if not isinstance(entity, dict):
        raise _BadRecord(f"'{key}' must be an object with 'pos' (and optionally 'name', 'type')")
    pos = _require(entity, "pos", where=f"'{key}'")
    if not (isinstance(pos, list) and len(pos) == 2 and all(_is_int(p) for p in pos)):
        raise _BadRecord(f"'{key}'.'pos' must be [start, end] token indices, got {pos!r}")
    start, end = pos
    _check_span(role, start, end, n_tokens, note="")
    return EntityMention(start, end, _optional_type(entity.get("type"), f"'{key}'.'type'"))


def _from_tacred(record: dict, instance_id: object) -> RelationInstance:
    tokens = _tokens(record, "token")
    head = _tacred_mention(record, "subj", "head", len(tokens))
    tail = _tacred_mention(record, "obj", "tail", len(tokens))
    return RelationInstance(str(instance_id), tokens, head, tail, _relation(record))


def _tacred_mention(record: dict, prefix: str, role: str, n_tokens: int) -> EntityMention:
    first, last = _require(record, f"{prefix}_start"), _require(record, f"{prefix}_end")
    for key, value in ((f"{prefix}_start", first), (f"{prefix}_end", last)):
        if not _is_int(value):
            raise _BadRecord(f"'{key}' must be a token index (integer), got {value!r}")
    # TACRED's end is inclusive; ours is exclusive.
    note = f" ({prefix}_start={first}, {prefix}_end={last}, end inclusive)"
    _check_span(role, first, last + 1, n_tokens, note)
    entity_type = _require(record, f"{prefix}_type")
    return EntityMention(first, last + 1, _optional_type(entity_type, f"'{prefix}_type'"))


def _tokens(record: dict, key: str) -> tuple[str, ...]:
    tokens = _require(record, key)
    if not (isinstance(tokens, list) and tokens and all(isinstance(t, str) for t in tokens)):
        raise _BadRecord(f"'{key}' must be a non-empty list of strings")
    return tuple(tokens)


def _relation(record: dict) -> str:
    relation = _require(record, "relation")
    if not isinstance(relation, str) or not relation:
        raise _BadRecord(f"'relation' must be a non-empty string, got {relation!r}")
    return relation


def _check_span(role: str, start: int, end: int, n_tokens: int, note: str) -> None:
    if end <= start:
        raise _BadRecord(f"{role} span [{start}, {end}){note} is empty")
    if start < 0 or end > n_tokens:
        raise _BadRecord(
            f"{role} span [{start}, {end}){note} is out of range for a sentence of {n_tokens} tokens"
        )


def _optional_type(value: object, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise _BadRecord(f"{name} must be a string, got {value!r}")


def _require(mapping: dict, key: str, where: str = "the record") -> object:
    if key not in mapping:
        raise _BadRecord(f"missing key '{key}' in {where}")
    return mapping[key]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown_label_problem(relation: str, label_map: LabelMap) -> str:
    known = ", ".join(label_map.labels) if len(label_map) <= 50 else f"{len(label_map)} labels"
    return (
        f"relation {relation!r} is not in the label map (rel2id: {known}); "
        "add it to rel2id.json or fix the record"
    )


_PARSERS: dict[str, Callable[[dict, object], RelationInstance]] = {
    OPENNRE: _from_opennre,
    TACRED: _from_tacred,
}
