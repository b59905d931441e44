"""The catalog (`describe`, schema/catalog.json), its schemas, and `validate-params`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trapdoor_trainer import hyperparams
from trapdoor_trainer.attacks import ATTACKS, resolve_params
from trapdoor_trainer.catalog import build_catalog, catalog_json, check_params
from trapdoor_trainer.defenses.registry import METHODS
from trapdoor_trainer.errors import SpecError
from trapdoor_trainer.models import ARCHITECTURES
from trapdoor_trainer.schema_check import check_schema, errors

TRAINER_ROOT = Path(__file__).resolve().parents[1]
CATALOG_FILE = TRAINER_ROOT.parent / "schema" / "catalog.json"


def trainer(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trapdoor_trainer", *args], cwd=TRAINER_ROOT, input=stdin, capture_output=True, text=True, timeout=120
    )


def test_checked_in_catalog_matches_describe():
    proc = trainer("describe")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == catalog_json()
    assert CATALOG_FILE.read_text() == proc.stdout, (
        "schema/catalog.json differs from `python -m trapdoor_trainer describe`: run `make catalog` and commit the result"
    )


def test_catalog_shape():
    catalog = build_catalog()
    assert list(catalog) == ["catalogVersion", "methods", "attacks", "architectures"] and catalog["catalogVersion"] == 1
    for method in catalog["methods"]:
        assert list(method) == [
            "name", "description", "kind", "requiredInputs", "optionalInputs", "hyperparameters", "hyperparametersSchema",
        ]  # fmt: skip
    for attack in catalog["attacks"]:
        assert list(attack) == ["name", "cleanLabel", "description", "params", "paramsSchema"]
    assert catalog["architectures"] == list(ARCHITECTURES) == ["wrn16-1", "resnet18", "resnet34", "small-cnn"]
    assert [m["name"] for m in catalog["methods"]][:2] == ["TRAP_AND_REPLACE", "NO_DEFENSE"]


def every_schema():
    catalog = build_catalog()
    for method in catalog["methods"]:
        yield method["name"], method["hyperparametersSchema"], {k: p["default"] for k, p in method["hyperparameters"].items()}
    for attack in catalog["attacks"]:
        yield attack["name"], attack["paramsSchema"], attack["params"]


def test_schemas_are_closed_objects_in_the_subset_whose_defaults_validate():
    for name, schema, defaults in every_schema():
        check_schema(schema)
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
        assert list(schema["properties"]) == list(defaults), name
        required = set(schema.get("required", []))
        for key, prop in schema["properties"].items():
            if key in required:
                assert "default" not in prop
            else:
                assert prop["default"] == defaults[key] and not list(errors(defaults[key], prop, key)), (name, key)
            assert prop["description"], (name, key)
    assert {(n, tuple(s["required"])) for n, s, _ in every_schema() if "required" in s} == {("custom", ("trigger",))}


def test_param_tables_map_to_json_schema_types():
    schema = hyperparams.table_schema(
        {
            "n": hyperparams.Param(3, "int", "n", minimum=1, maximum=9),
            "x": hyperparams.Param(None, "float", "x", minimum=0, nullable=True),
            "b": hyperparams.Param(True, "bool", "b"),
            "s": hyperparams.Param(None, "str", "s", choices=("a", "b"), nullable=True),
        }
    )
    props = schema["properties"]
    assert props["n"] == {"type": "integer", "minimum": 1, "maximum": 9, "default": 3, "description": "n"}
    assert props["x"]["type"] == ["number", "null"] and props["b"]["type"] == "boolean"
    assert props["s"]["type"] == ["string", "null"] and props["s"]["enum"] == ["a", "b", None]


def test_resolve_validates_through_the_published_schema_and_coerces():
    method = METHODS.get("TRAP_AND_REPLACE")
    assert method.schema == build_catalog()["methods"][0]["hyperparametersSchema"]
    resolved = method.resolve({"stage1Epochs": 3.0, "lambda1": 2})
    assert resolved["stage1Epochs"] == 3 and type(resolved["stage1Epochs"]) is int and type(resolved["lambda1"]) is float
    assert method.resolve(None) == method.resolve({})
    assert resolve_params("lba", {"layer": 12.0})["layer"] == 12


@pytest.mark.parametrize("name", ["constructor", "__proto__", "toString", "prototype"])
def test_prototype_names_are_unknown_everywhere(name):
    with pytest.raises(SpecError) as hp:
        METHODS.get("NO_DEFENSE").resolve({name: 1})
    assert hp.value.field == f"hyperparameters.{name}" and hp.value.message.startswith("unknown hyper-parameter; known: [")
    with pytest.raises(SpecError) as attack:
        resolve_params("blend", {name: 1})
    assert attack.value.field == f"attack.params.{name}"
    for registry in (METHODS, ATTACKS, ARCHITECTURES):
        assert name not in registry
        with pytest.raises(SpecError):
            registry.get(name)


CASES = [
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": {"lambda1": 2, "stage1Epochs": 3.0}}, None),
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": {"stage2Epochs": None}}, None),
    ({"kind": "method", "name": "NO_DEFENSE"}, None),
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": {"lambda1": -1}}, "hyperparameters.lambda1"),
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": {"stage1Epochs": 2.5}}, "hyperparameters.stage1Epochs"),
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": {"stage1Epochs": True}}, "hyperparameters.stage1Epochs"),
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": {"stage1Epochs": None}}, "hyperparameters.stage1Epochs"),
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": {"constructor": 1}}, "hyperparameters.constructor"),
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": []}, "hyperparameters"),
    ({"kind": "method", "name": "TRAP_AND_REPLACE", "value": None}, "hyperparameters"),
    ({"kind": "method", "name": "MAGIC", "value": {}}, "method"),
    ({"kind": "attack", "name": "blend", "value": {"alpha": 1}}, None),
    ({"kind": "attack", "name": "blend", "value": {"alpha": 2}}, "attack.params.alpha"),
    ({"kind": "attack", "name": "badnet_grid", "value": {"alpha": 0.2}}, "attack.params.alpha"),
    ({"kind": "attack", "name": "lba", "value": {"layer": 11}}, "attack.params.layer"),
    ({"kind": "attack", "name": "custom", "value": {}}, "attack.params.trigger"),
    ({"kind": "attack", "name": "custom", "value": {"trigger": "missing.npy", "mask": None}}, None),  # the file is a semantic check
    ({"kind": "attack", "name": "custom", "value": {"trigger": [[0, 255], [9, "x"]]}}, "attack.params.trigger[1][1]"),
    ({"kind": "attack", "name": "wanet", "value": {}}, "attack.name"),
    ({"kind": "dataset", "name": "x", "value": {}}, "kind"),
]


@pytest.mark.parametrize("item, field", CASES)
def test_check_params_is_the_schema_alone(item, field):
    answer = check_params(item)
    assert answer == {"ok": True} if field is None else (answer["ok"] is False and answer["field"] == field and answer["message"])


def test_validate_params_cli_answers_one_line_per_input():
    lines = [json.dumps(item) for item, _ in CASES]
    stdin = "\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\nnot json\n"
    proc = trainer("validate-params", stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(answers) == len(CASES) + 1  # blank lines are skipped
    for answer, (item, field) in zip(answers, CASES):
        assert answer == check_params(item)
        assert answer["ok"] == (field is None) and answer.get("field") == field
    assert answers[-1]["ok"] is False and answers[-1]["field"] == "input"


def test_semantic_checks_run_after_the_schema(tmp_path):
    with pytest.raises(SpecError) as missing_file:
        resolve_params("custom", {"trigger": str(tmp_path / "missing.npy")})
    assert missing_file.value.field == "attack.params.trigger" and "does not exist" in missing_file.value.message
    with pytest.raises(SpecError) as pixel_range:
        resolve_params("custom", {"trigger": [[0, 300]]})
    assert pixel_range.value.message == "pixel values must lie in [0, 255]"
