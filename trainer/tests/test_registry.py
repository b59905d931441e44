"""The one Registry type behind methods, attacks and architectures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest

from trapdoor_trainer.attacks import ATTACKS, list_attacks
from trapdoor_trainer.defenses import tnr
from trapdoor_trainer.defenses.registry import METHODS, MethodInfo, methods
from trapdoor_trainer.errors import SpecError
from trapdoor_trainer.models import ARCHITECTURES
from trapdoor_trainer.registry import Registry


@dataclass(frozen=True)
class Thing:
    name: str
    build: Callable
    order: int = 0


def test_register_decorates_gets_and_lists_by_order_then_name():
    things = Registry("thing", "spec.thing", lambda name, obj, **info: Thing(name, obj, **info))

    @things.register("b")
    @things.register("late", order=5)
    def build():
        return 1

    @things.register("a")
    def other():
        return 2

    assert build() == 1 and things.get("late").build is build and things.get("a").build is other
    assert list(things) == things.names() == ["a", "b", "late"] and len(things) == 3
    assert [t.name for t in things.entries()] == ["a", "b", "late"]
    assert "a" in things and "c" not in things and 1 not in things
    with pytest.raises(ValueError):
        things.register("a")(other)
    for bad in ("c", None, 3, ["a"]):
        with pytest.raises(SpecError) as info:
            things.get(bad)
        assert info.value.field == "spec.thing" and info.value.message.endswith("known: ['a', 'b', 'late']")


def test_the_three_registries_find_their_modules():
    assert METHODS.names()[:2] == ["TRAP_AND_REPLACE", "NO_DEFENSE"]
    assert isinstance(METHODS.get("TRAP_AND_REPLACE"), MethodInfo) and METHODS.get("TRAP_AND_REPLACE").run is tnr.run
    assert set(methods()) == set(METHODS) and len(METHODS) == 10
    assert METHODS.names()[-2:] == ["SCAN", "EVALUATE"]  # the two that train no defended model list last
    assert ATTACKS.names() == [a.name for a in list_attacks()]
    assert ATTACKS.names()[-4:] == ["sig", "lcba", "lba", "custom"]
    assert list(ARCHITECTURES) == ["wrn16-1", "resnet18", "resnet34", "small-cnn"]


@pytest.mark.parametrize(
    "registry, field", [(METHODS, "method"), (ATTACKS, "attack.name"), (ARCHITECTURES, "architecture")]
)
def test_unknown_names_are_spec_errors_on_their_field(registry, field):
    with pytest.raises(SpecError) as info:
        registry.get("nope")
    assert info.value.field == field and info.value.message.startswith(f"unknown {registry.kind} 'nope'; known: [")
