"""Validate ``manifest.json`` against ``manifest.schema.json`` without a JSON Schema library.

The runtime does not depend on ``jsonschema`` (only the tests do), so this module interprets the
subset of JSON Schema draft 2020-12 that the manifest schema uses: ``type``, ``const``, ``enum``,
``required``, ``properties``, ``additionalProperties``, ``propertyNames``, ``minProperties``,
``items``, ``minItems``, ``uniqueItems``, ``pattern``, ``minLength``, ``minimum``, ``maximum``,
``exclusiveMinimum``, ``allOf``, ``anyOf``, ``not`` and local ``$ref`` (``#/$defs/...``). A keyword
outside that subset raises :class:`SchemaError`, so a schema change cannot silently weaken the
check (tests/model/test_schema.py compares the verdicts with ``jsonschema``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).with_name("manifest.schema.json")
#: Keywords that only annotate (or hold definitions for `$ref`).
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})


class SchemaError(Exception):
    """The schema itself uses a keyword this validator does not implement."""


@cache
def manifest_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def first_error(instance: Any, schema: dict[str, Any] | None = None) -> str | None:
    """The first violation of ``schema`` (default: the manifest schema) as ``"at.path: why"``."""
    root = manifest_schema() if schema is None else schema
    return _Validator(root).check(instance, root, "")


def _is_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if kind == "number":
        return True
    if kind == "integer":
        return isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())
    raise SchemaError(f"unknown type {kind!r}")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Validator:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def check(self, value: Any, schema: dict[str, Any], where: str) -> str | None:
        for key, arg in schema.items():
            if key in ANNOTATIONS:
                continue
            if key == "additionalProperties":
                error = self.additional(value, schema.get("properties", {}), arg, where)
            elif key in _RULES:
                error = _RULES[key](self, value, arg, where)
            else:
                raise SchemaError(f"unsupported schema keyword {key!r}")
            if error is not None:
                return error
        return None

    def additional(self, value: Any, known: dict[str, Any], extra: Any, where: str) -> str | None:
        """``additionalProperties``: a bool or a schema for the fields ``properties`` omits."""
        if not isinstance(value, dict):
            return None
        for name in value:
            if name in known:
                continue
            if extra is False:
                return _fail(_at(where, name), "is not a known field")
            if isinstance(extra, dict):
                error = self.check(value[name], extra, _at(where, name))
                if error is not None:
                    return error
        return None

    def resolve(self, ref: str) -> dict[str, Any]:
        if not ref.startswith("#/"):
            raise SchemaError(f"unsupported $ref {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return dict(node)


def _at(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def _fail(where: str, why: str) -> str:
    return f"{where or 'the manifest'}: {why}"


Rule = Callable[[_Validator, Any, Any, str], "str | None"]


def _type(v: _Validator, value: Any, kind: Any, where: str) -> str | None:
    kinds = kind if isinstance(kind, list) else [kind]
    if any(_is_type(value, k) for k in kinds):
        return None
    return _fail(where, f"must be of type {' or '.join(kinds)}, got {_short(value)}")


def _const(v: _Validator, value: Any, const: Any, where: str) -> str | None:
    same = value == const and type(value) is type(const)
    return None if same else _fail(where, f"must be {_short(const)}, got {_short(value)}")


def _enum(v: _Validator, value: Any, options: Any, where: str) -> str | None:
    if any(value == o and type(value) is type(o) for o in options):
        return None
    return _fail(where, f"must be one of {', '.join(map(_short, options))}, got {_short(value)}")


def _required(v: _Validator, value: Any, names: Any, where: str) -> str | None:
    if isinstance(value, dict):
        for name in names:
            if name not in value:
                return _fail(where, f"{name!r} is missing")
    return None


def _properties(v: _Validator, value: Any, props: Any, where: str) -> str | None:
    if isinstance(value, dict):
        for name, sub in props.items():
            if name in value:
                error = v.check(value[name], sub, _at(where, name))
                if error is not None:
                    return error
    return None


def _property_names(v: _Validator, value: Any, sub: Any, where: str) -> str | None:
    if isinstance(value, dict):
        for name in value:
            error = v.check(name, sub, _at(where, name))
            if error is not None:
                return _fail(_at(where, name), "is not an allowed name")
    return None


def _min_properties(v: _Validator, value: Any, n: Any, where: str) -> str | None:
    if isinstance(value, dict) and len(value) < n:
        return _fail(where, f"needs at least {n} entr{'y' if n == 1 else 'ies'}")
    return None


def _items(v: _Validator, value: Any, sub: Any, where: str) -> str | None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            error = v.check(item, sub, _at(where, index))
            if error is not None:
                return error
    return None


def _min_items(v: _Validator, value: Any, n: Any, where: str) -> str | None:
    if isinstance(value, list) and len(value) < n:
        return _fail(where, f"needs at least {n} item(s)")
    return None


def _unique(v: _Validator, value: Any, unique: Any, where: str) -> str | None:
    if unique and isinstance(value, list):
        seen = [json.dumps(item, sort_keys=True) for item in value]
        if len(set(seen)) != len(seen):
            return _fail(where, "has repeated items")
    return None


def _pattern(v: _Validator, value: Any, pattern: Any, where: str) -> str | None:
    if isinstance(value, str) and re.search(pattern, value) is None:
        return _fail(where, f"{_short(value)} does not match {pattern}")
    return None


def _min_length(v: _Validator, value: Any, n: Any, where: str) -> str | None:
    if isinstance(value, str) and len(value) < n:
        return _fail(where, f"must have at least {n} character(s)")
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _minimum(v: _Validator, value: Any, n: Any, where: str) -> str | None:
    ok = not _number(value) or value >= n
    return None if ok else _fail(where, f"must be at least {n}, got {_short(value)}")


def _maximum(v: _Validator, value: Any, n: Any, where: str) -> str | None:
    ok = not _number(value) or value <= n
    return None if ok else _fail(where, f"must be at most {n}, got {_short(value)}")


def _exclusive_minimum(v: _Validator, value: Any, n: Any, where: str) -> str | None:
    ok = not _number(value) or value > n
    return None if ok else _fail(where, f"must be more than {n}, got {_short(value)}")


def _all_of(v: _Validator, value: Any, subs: Any, where: str) -> str | None:
    for sub in subs:
        error = v.check(value, sub, where)
        if error is not None:
            return error
    return None


def _any_of(v: _Validator, value: Any, subs: Any, where: str) -> str | None:
    errors = [v.check(value, sub, where) for sub in subs]
    return None if any(e is None for e in errors) else errors[0]


def _not(v: _Validator, value: Any, sub: Any, where: str) -> str | None:
    if v.check(value, sub, where) is None:
        return _fail(where, "has a field it must not have")
    return None


def _ref(v: _Validator, value: Any, ref: Any, where: str) -> str | None:
    return v.check(value, v.resolve(ref), where)


_RULES: dict[str, Rule] = {
    "type": _type,
    "const": _const,
    "enum": _enum,
    "required": _required,
    "properties": _properties,
    "propertyNames": _property_names,
    "minProperties": _min_properties,
    "items": _items,
    "minItems": _min_items,
    "uniqueItems": _unique,
    "pattern": _pattern,
    "minLength": _min_length,
    "minimum": _minimum,
    "maximum": _maximum,
    "exclusiveMinimum": _exclusive_minimum,
    "allOf": _all_of,
    "anyOf": _any_of,
    "not": _not,
    "$ref": _ref,
}
