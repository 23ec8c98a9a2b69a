"""Exponential backoff with jitter for redialing a member (pure: the caller sleeps).

Delays grow ``initial, 2*initial, 4*initial, ...`` up to ``maximum``; each is reduced by
a random fraction of up to ``jitter`` so members that lost each other at the same
moment do not redial in lockstep. The random source is injected (seeded in tests).
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Successive retry delays; ``reset`` after a success."""

    __slots__ = ("_attempt", "_rng", "initial", "jitter", "maximum")

    def __init__(
        self, *, initial: float, maximum: float, jitter: float, rng: random.Random
    ) -> None:
        if not 0 < initial <= maximum or not 0 <= jitter < 1:
            raise ValueError("need 0 < initial <= maximum and 0 <= jitter < 1")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rng = rng
        self._attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        base = min(self.maximum, self.initial * 2.0**self._attempt)
        if base < self.maximum:
            self._attempt += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self._attempt = 0
