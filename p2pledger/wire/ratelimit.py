"""Token buckets for per-peer receive limits (pure: time is an argument).

``TokenBucket.take`` always admits the amount and returns how long the caller should
wait so the average stays under ``rate`` (the bucket may go into debt, which admits a
single item larger than the burst). ``ReceiveThrottle`` combines a message bucket and a
byte bucket; the reader of a peer sleeps for the delay, which pushes back on that
peer alone through TCP flow control.
"""

from __future__ import annotations

__all__ = ["ReceiveThrottle", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, *, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float, amount: float) -> float:
        """Take ``amount`` tokens at time ``now``; return the seconds to wait (0 if none)."""
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate) - amount
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


class ReceiveThrottle:
    """A peer's receive limits in messages and bytes per second."""

    __slots__ = ("_bytes", "_messages")

    def __init__(
        self,
        *,
        messages_per_second: float,
        message_burst: float,
        bytes_per_second: float,
        byte_burst: float,
        now: float,
    ) -> None:
        self._messages = TokenBucket(rate=messages_per_second, burst=message_burst, now=now)
        self._bytes = TokenBucket(rate=bytes_per_second, burst=byte_burst, now=now)

    def delay(self, now: float, size: int) -> float:
        """Account one message of ``size`` bytes; the seconds to wait before the next."""
        return max(self._messages.take(now, 1), self._bytes.take(now, size))
