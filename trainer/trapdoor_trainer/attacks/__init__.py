"""Backdoor attacks: triggers on uint8 images and the built-in poisoning protocol.

Geometry is defined on 32x32 RGB (tnr-reference.md section 2.4) and scaled to other sizes and to
one channel by `geometry`.
"""

from __future__ import annotations

from .base import Trigger
from .poisoning import PoisonResult, make_asr_set, poison_dataset
from .registry import ATTACKS, Attack, AttackInfo, build_trigger, describe_attacks, get_attack, list_attacks, resolve_params

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackInfo",
    "PoisonResult",
    "Trigger",
    "build_trigger",
    "describe_attacks",
    "get_attack",
    "list_attacks",
    "make_asr_set",
    "poison_dataset",
    "resolve_params",
]
