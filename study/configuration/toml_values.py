"""TOML values read against type hints, and TOML syntax errors, as problem lines that name the
file's dotted key: the checking a study file's sections share (study_file.py says which keys each
section has). Nothing here knows a study: a section is a schema {key: (type hint, default)}."""
from __future__ import annotations

import math
import re
import tomllib
import types
from typing import Literal, Union, get_args, get_origin

REQUIRED = object()  # a schema default: the key must be given
BAD = object()  # what a value that does not fit its hint reads as
_NOUNS = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
          float: ("a number", "numbers"), str: ("a string", "strings")}


def toml_problem(error: tomllib.TOMLDecodeError, text: str) -> str:
    # Python 3.11's error carries the position only in its message: "... (at line 3, column 7)".
    found = re.search(r"line (\d+), column (\d+)", str(error))
    line = getattr(error, "lineno", None) or (int(found.group(1)) if found else None)
    column = getattr(error, "colno", None) or (int(found.group(2)) if found else None)
    if line is None:
        return f"invalid TOML: {error}"
    source = text.splitlines()[line - 1].strip() if 0 < line <= len(text.splitlines()) else ""
    message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
    return f"line {line}, column {column}: invalid TOML: {message}: {source!r}"


def read_table(raw: dict, section: str, schema: dict, problems: list[str],
               set_by_study: dict[str, str] | None = None) -> dict:
    """[section] of `raw` read against `schema`, defaults filled in; a bad value is left out and its
    problem added. `set_by_study`: keys the file may not set, each with what to use instead."""
    table = raw.get(section, {})
    if not isinstance(table, dict):
        problems.append(f"{section}: expected a [{section}] table, got {table!r}")
        table = {}
    out = {}
    for key, value in table.items():
        if set_by_study and key in set_by_study:
            problems.append(f"{section}.{key}: set per trial by the study; use {set_by_study[key]} instead")
        elif key not in schema:
            problems.append(f"{section}.{key}: unknown key; allowed: {', '.join(sorted(schema))}")
        else:
            out[key] = typed_value(f"{section}.{key}", value, schema[key][0], problems)
    for key, (_, default) in schema.items():
        if key not in table:
            if default is REQUIRED:
                problems.append(f"{section}.{key}: required ({_describe(schema[key][0])})")
            else:
                out[key] = default
    return {k: v for k, v in out.items() if v is not BAD}


def typed_value(key: str, value, hint, problems: list[str]):
    out = _coerce(value, hint)
    if out is BAD:
        problems.append(f"{key}: expected {_describe(hint)}, got {value!r} ({type(value).__name__})")
    return out


def _coerce(value, hint):
    """value as `hint` (TOML ints accepted as floats, lists as tuples), or BAD."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is type(None):
        return None if value is None else BAD
    if origin in (Union, types.UnionType):
        return next((out for arg in args if (out := _coerce(value, arg)) is not BAD), BAD)
    if origin is Literal:
        return value if any(value == a and type(value) is type(a) for a in args) else BAD
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return BAD
        hints = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        items = [_coerce(v, h) for v, h in zip(value, hints)] if len(hints) == len(value) else [BAD]
        return BAD if BAD in items else tuple(items)
    if isinstance(value, bool) and hint is not bool:
        return BAD
    if hint is float and isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else BAD
    return value if isinstance(value, hint) else BAD


def _describe(hint) -> str:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple and args[-1] is Ellipsis:
        return f"a list of {_NOUNS[args[0]][1]}"
    if origin is tuple:
        return f"a [low, high] list of {len(args)} numbers" if len(args) == 2 else f"a list of {len(args)} values"
    return _NOUNS[hint][0]
