"""Retry policies for steps."""

from __future__ import annotations

from typing import Protocol


class RetryPolicy(Protocol):
    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        """Seconds to wait before the next attempt, or None to give up.

        `attempts` counts the attempts already made (1 after the first failure).
        """


class ConstantDelayRetryPolicy:
    """Retry up to `maximum_attempts` attempts in all, `delay` seconds apart."""

    def __init__(self, maximum_attempts: int = 3, delay: float = 5.0) -> None:
        if maximum_attempts < 1:
            raise ValueError("maximum_attempts must be at least 1")
        if delay < 0:
            raise ValueError("delay must not be negative")
        self.maximum_attempts = maximum_attempts
        self.delay = delay

    def next(self, elapsed_time: float, attempts: int, error: Exception) -> float | None:
        if attempts >= self.maximum_attempts:
            return None
        return self.delay
