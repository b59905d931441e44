"""The JSON Schema subset validator: JSON semantics, ajv's error order, field names, the closed subset."""

from __future__ import annotations

import math

import pytest

from trapdoor_trainer.errors import SpecError
from trapdoor_trainer.schema_check import SchemaError, check_schema, errors, json_equal, validate


def problem(value, schema, field="x", **kw):
    """(field, message) of the first problem, or None."""
    first = next(errors(value, schema, field, **kw), None)
    return None if first is None else (first.field, first.message)


@pytest.mark.parametrize("value", [3, 3.0, -2, 0, 10**20, 1e20])
def test_integers_are_numbers_without_a_fraction(value):
    assert problem(value, {"type": "integer"}) is None


@pytest.mark.parametrize("value", [2.5, True, False, "3", None, [3], {}, math.nan, math.inf])
def test_non_integers_are_rejected(value):
    assert problem(value, {"type": "integer"}) is not None


@pytest.mark.parametrize("value, ok", [(1, True), (1.5, True), (True, False), ("1", False), (math.nan, False), (-math.inf, False)])
def test_numbers_exclude_booleans_and_non_json_floats(value, ok):
    assert (problem(value, {"type": "number"}) is None) == ok


def test_type_messages():
    assert problem(2.5, {"type": "integer"}) == ("x", "must be an integer, got 2.5")
    assert problem(True, {"type": "number"}) == ("x", "must be a number, got true")
    assert problem(1, {"type": "boolean"}) == ("x", "must be true or false, got 1")
    assert problem(None, {"type": "string"}) == ("x", "must not be null")
    assert problem("a", {"type": ["number", "null"]}) == ("x", 'must be a number or null, got "a"')
    assert problem(1, {"type": ["array", "string", "null"]}) == ("x", "must be an array, a string or null, got 1")
    assert problem(None, {"type": ["integer", "null"]}) is None


def test_long_values_are_cut_short_in_messages():
    field, message = problem(list(range(1000)), {"type": "string"})
    assert len(message) < 120 and message.endswith("...")


def test_enum_uses_json_equality():
    assert problem(12.0, {"type": "integer", "enum": [10, 12]}) is None
    assert problem(True, {"enum": [1, 2]}) == ("x", "must be one of [1, 2], got true")
    assert problem(1, {"enum": [True]}) is not None
    assert problem(None, {"type": ["string", "null"], "enum": ["a", None]}) is None
    assert problem("b", {"type": "string", "enum": ["a"]}) == ("x", 'must be one of ["a"], got "b"')
    assert json_equal([1, {"a": 2.0}], [1.0, {"a": 2}]) and not json_equal({"a": 1}, {"b": 1})


def test_bounds_apply_to_numbers_only():
    schema = {"type": ["number", "string", "null"], "minimum": 0, "maximum": 1}
    assert problem(-1, schema) == ("x", "must be >= 0, got -1")
    assert problem(2, schema) == ("x", "must be <= 1, got 2")
    assert problem("-1", schema) is None and problem(None, schema) is None


def test_items_name_the_element():
    schema = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    assert problem([[1, 2], [3, "4"]], schema, "attack.params.trigger") == ("attack.params.trigger[1][1]", 'must be a number, got "4"')
    assert problem("not-an-array", {"type": ["array", "string"], "items": {"type": "number"}}) is None


def test_not():
    schema = {"type": "integer", "not": {"enum": [13]}}
    assert problem(12, schema) is None
    assert problem(13, schema) == ("x", 'must not match {"enum": [13]}, got 13')


OBJECT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"lambda1": {"type": "number", "minimum": 0}, "alpha": {"type": "number"}},
    "required": ["alpha"],
}


def test_objects_report_required_then_unknown_then_known_properties():
    assert problem({"lambda1": -1, "zzz": 1}, OBJECT, "hyperparameters") == ("hyperparameters.alpha", "is required")
    assert problem({"alpha": 1, "lambda1": -1, "zzz": 1}, OBJECT, "hyperparameters") == (
        "hyperparameters.zzz", "unknown field; known: ['alpha', 'lambda1']",
    )
    assert problem({"alpha": 1, "lambda1": -1}, OBJECT, "hyperparameters") == ("hyperparameters.lambda1", "must be >= 0, got -1")
    assert problem({"alpha": "a", "lambda1": -1}, OBJECT, "p") == ("p.lambda1", "must be >= 0, got -1")  # the schema's order


def test_unknown_keys_are_reported_in_javascript_order():
    schema = {"type": "object", "additionalProperties": False, "properties": {}}
    assert problem({"b": 1, "10": 1, "2": 1}, schema, "p") == ("p.2", "unknown field; known: none")
    assert problem({"b": 1, "02": 1}, schema, "p")[0] == "p.b"


@pytest.mark.parametrize("name", ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"])
def test_inherited_names_are_unknown(name):
    assert problem({name: 1, "alpha": 1}, OBJECT, "attack.params", unknown="parameter")[0] == f"attack.params.{name}"


def test_validate_raises_the_first_problem():
    validate({"alpha": 0.5}, OBJECT, "p")
    with pytest.raises(SpecError) as info:
        validate([], OBJECT, "hyperparameters")
    assert (info.value.field, info.value.message) == ("hyperparameters", "must be an object, got []")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "integer", "exclusiveMinimum": 0},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        {"type": "object", "properties": {"a": {"type": "string", "pattern": "^a"}}},
        {"type": "array", "items": {"const": 1}},
        {"type": "object", "additionalProperties": {"type": "number"}},
        {"type": "float"},
        {"type": []},
        {"enum": "a"},
        {"minimum": "0"},
        {"required": "a"},
    ],
)
def test_schemas_outside_the_subset_are_refused(schema):
    with pytest.raises(SchemaError):
        check_schema(schema)
    with pytest.raises(SchemaError):
        list(errors({}, schema, "x"))  # even where the value never reaches the offending part
