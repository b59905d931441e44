"""A cancellation flag for tests: it says "cancel" after a given number of polls."""

from __future__ import annotations


class CancelAfter:
    """Cancellation requested after `steps` polls of the training loop."""

    def __init__(self, steps: int):
        self.left = steps

    @property
    def requested(self) -> bool:
        self.left -= 1
        return self.left < 0
