"""A JSON Schema (draft-07) validator for the small subset the catalog's schemas use.

One job: check a decoded JSON value against a schema and name the first problem by its field,
e.g. `hyperparameters.lambda1` or `attack.params.trigger[0][2]`. The service validates the same
objects with ajv against the same schemas (`schema/catalog.json`), so this subset must mean here
exactly what it means there:

- `type`: a string or a list of strings from integer, number, boolean, string, null, array,
  object. An integer is any number with no fractional part (3.0 is one); true and false are
  never numbers. NaN and infinity are not JSON and are rejected as numbers.
- `enum` (JSON equality: 1 == 1.0, true != 1), `minimum`, `maximum` (numbers only), `items`
  (arrays only: one schema for every element), `not`.
- `properties`, `required`, `additionalProperties: false|true` (objects only).
- `default` and `description` are annotations; they are never checked against the value.

Any other keyword is a SchemaError (a programming error, not a user's): the subset cannot grow
without this module, and ajv, learning about it.

Problems are reported in ajv's order (its default, first-error mode), so that the field named
agrees: the node's type first, then enum, not and the bounds; for an object its missing required
properties, then unknown properties, then each known property (the value's and the schema's keys in the order
JavaScript enumerates them: array-index-like names ascending, then the rest as written). An unknown property is named by its own path; an inherited name such as
`constructor` or `__proto__` is unknown like any other, since only `properties` counts.

Callers layer semantic checks (array contents, files, cross-field rules) on top, after this.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterator, Mapping, Optional

from .errors import SpecError

TYPES = ("integer", "number", "boolean", "string", "null", "array", "object")
KEYWORDS = frozenset(
    {"type", "enum", "minimum", "maximum", "items", "not", "properties", "required", "additionalProperties", "default", "description"}
)
_NOUNS = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "string": "a string",
    "null": "null",
    "array": "an array",
    "object": "an object",
}


class SchemaError(Exception):
    """The schema itself uses something outside the subset."""


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _has_type(value: Any, name: str) -> bool:
    if name == "integer":
        return _is_number(value) and (isinstance(value, int) or value.is_integer())
    if name == "number":
        return _is_number(value)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "null":
        return value is None
    if name == "array":
        return isinstance(value, (list, tuple))
    return isinstance(value, Mapping)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: numbers by value, booleans apart from numbers, containers deeply."""
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return False


def _types(schema: Mapping) -> Optional[list]:
    declared = schema.get("type")
    if declared is None:
        return None
    names = [declared] if isinstance(declared, str) else declared
    if not isinstance(names, list) or not names or any(n not in TYPES for n in names):
        raise SchemaError(f"type must be one of {list(TYPES)} or a non-empty list of them, got {declared!r}")
    return names


def check_schema(schema: Any) -> Any:
    """`schema` unchanged if it stays inside the subset, else SchemaError saying where it leaves it."""
    if not isinstance(schema, Mapping):
        raise SchemaError(f"a schema must be an object, got {schema!r}")
    unknown = sorted(set(schema) - KEYWORDS)
    if unknown:
        raise SchemaError(f"keywords outside the supported subset: {unknown}")
    _types(schema)
    if "enum" in schema and not isinstance(schema["enum"], list):
        raise SchemaError("enum must be a list")
    for bound in ("minimum", "maximum"):
        if bound in schema and not _is_number(schema[bound]):
            raise SchemaError(f"{bound} must be a number")
    for sub in ("items", "not"):
        if sub in schema:
            check_schema(schema[sub])
    if "properties" in schema:
        if not isinstance(schema["properties"], Mapping):
            raise SchemaError("properties must be an object")
        for sub in schema["properties"].values():
            check_schema(sub)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(n, str) for n in required):
        raise SchemaError("required must be a list of property names")
    if not isinstance(schema.get("additionalProperties", True), bool):
        raise SchemaError("additionalProperties must be true or false")
    if "description" in schema and not isinstance(schema["description"], str):
        raise SchemaError("description must be a string")
    return schema


def _show(value: Any, limit: int = 80) -> str:
    """A value in an error message, as JSON where it is JSON, cut short where it is long."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expected(names: list) -> str:
    nouns = [_NOUNS[n] for n in names]
    return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]


def errors(value: Any, schema: Mapping, field: str, *, unknown: str = "field") -> Iterator[SpecError]:
    """Every problem of `value` against `schema`, in ajv's order, as SpecErrors naming the field.

    `field` names the value itself; `unknown` is the noun for properties the schema does not know
    ("unknown hyper-parameter; known: [...]"). SchemaError if `schema` leaves the subset.
    """
    check_schema(schema)
    return _errors(value, schema, field, unknown)


def _errors(value: Any, schema: Mapping, field: str, unknown: str) -> Iterator[SpecError]:
    names = _types(schema)
    if names is not None and not any(_has_type(value, n) for n in names):
        if value is None:
            yield SpecError(field, "must not be null")
        else:
            yield SpecError(field, f"must be {_expected(names)}, got {_show(value)}")
        return
    if "enum" in schema and not any(json_equal(value, option) for option in schema["enum"]):
        yield SpecError(field, f"must be one of {_show(schema['enum'], 400)}, got {_show(value)}")
    if "not" in schema and next(_errors(value, schema["not"], field, unknown), None) is None:
        yield SpecError(field, f"must not match {_show(schema['not'], 400)}, got {_show(value)}")
    if _is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            yield SpecError(field, f"must be >= {schema['minimum']}, got {_show(value)}")
        if "maximum" in schema and value > schema["maximum"]:
            yield SpecError(field, f"must be <= {schema['maximum']}, got {_show(value)}")
    if isinstance(value, (list, tuple)) and "items" in schema:
        for i, item in enumerate(value):
            yield from _errors(item, schema["items"], f"{field}[{i}]", unknown)
    if isinstance(value, Mapping):
        yield from _object_errors(value, schema, field, unknown)


def _js_order(keys) -> list:
    """Keys in the order JavaScript enumerates an object's: array-index-like names ascending first."""
    keys = list(keys)
    index = [k for k in keys if isinstance(k, str) and k.isdigit() and k.isascii() and (k == "0" or k[0] != "0") and int(k) < 2**32 - 1]
    taken = set(index)
    return sorted(index, key=int) + [k for k in keys if k not in taken]


def _object_errors(value: Mapping, schema: Mapping, field: str, unknown: str) -> Iterator[SpecError]:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            yield SpecError(f"{field}.{name}", "is required")
    if schema.get("additionalProperties", True) is False:
        known = sorted(properties) or "none"
        for name in _js_order(value):
            if name not in properties:
                yield SpecError(f"{field}.{name}", f"unknown {unknown}; known: {known}")
    for name in _js_order(properties):
        if name in value:
            yield from _errors(value[name], properties[name], f"{field}.{name}", unknown)


def validate(value: Any, schema: Mapping, field: str, *, unknown: str = "field") -> None:
    """Raise the first problem of `value` against `schema` as a SpecError naming its field."""
    for problem in errors(value, schema, field, unknown=unknown):
        raise problem
