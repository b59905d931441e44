"""Errors that map to the trainer's exit codes."""

from __future__ import annotations


class SpecError(Exception):
    """Invalid spec or input data (exit code 2). `field` names the offending spec path."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def to_json(self) -> dict:
        return {"error": "invalid_spec", "field": self.field, "message": self.message}


class Cancelled(Exception):
    """Raised inside the training loop after SIGTERM, once a checkpoint has been written (exit code 3)."""


EXIT_OK = 0
EXIT_INVALID = 2
EXIT_CANCELLED = 3
