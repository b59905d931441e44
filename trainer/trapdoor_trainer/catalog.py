"""The catalog: what `python -m trapdoor_trainer describe` prints and `schema/catalog.json` holds.

{"catalogVersion", "methods": [... "hyperparameters", "hyperparametersSchema"],
 "attacks": [... "params", "paramsSchema"], "architectures": [names]}, built from the three
registries. The schemas are draft-07 JSON Schemas of the objects a user passes
(`hyperparameters`, `attack.params`) in the subset `schema_check` implements; the trainer
validates through them and the service validates with them (ajv), so both sides agree.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, TextIO

from .errors import SpecError

CATALOG_VERSION = 1


def build_catalog() -> dict:
    from .attacks import describe_attacks
    from .defenses.registry import describe_methods
    from .models import ARCHITECTURES

    return {"catalogVersion": CATALOG_VERSION, "methods": describe_methods(), "attacks": describe_attacks(), "architectures": list(ARCHITECTURES)}


def catalog_json() -> str:
    """The catalog as `schema/catalog.json` stores it: 2-space indented, ending in a newline."""
    return json.dumps(build_catalog(), indent=2) + "\n"


def check_params(item: Any) -> dict:
    """One `validate-params` answer: `item` = {"kind": "method" | "attack", "name", "value"?} checked
    against that entry's schema alone (no semantic checks), `value` absent meaning {}.

    {"ok": true} or {"ok": false, "field", "message"}; a bad kind or an unknown name is reported on
    the field `kind`, `method` or `attack.name`.
    """
    from .attacks import get_attack
    from .defenses.registry import get_method

    try:
        if not isinstance(item, dict):
            raise SpecError("input", "must be an object {kind, name, value}")
        kind = item.get("kind")
        if kind not in ("method", "attack"):
            raise SpecError("kind", f'must be "method" or "attack", got {kind!r}')
        entry = get_method(item.get("name")) if kind == "method" else get_attack(item.get("name"))
        entry.validate(item.get("value", {}))
    except SpecError as e:
        return {"ok": False, "field": e.field, "message": e.message}
    return {"ok": True}


def check_params_lines(lines: Iterable[str], out: TextIO) -> None:
    """JSON lines in, one answer line out per non-blank line (flushed, so callers can stream)."""
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            answer = {"ok": False, "field": "input", "message": f"not JSON: {e}"}
        else:
            answer = check_params(item)
        out.write(json.dumps(answer) + "\n")
        out.flush()
