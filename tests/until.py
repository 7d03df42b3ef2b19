"""A source wrapper for tests that record from a live (wall-clock) source."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any


class Until:
    """Passes a source's messages on and ends after ``n`` messages, or ``idle_s`` without any."""

    clock = "wall"

    def __init__(self, source: Any, n: int, idle_s: float = 5.0) -> None:
        self.source, self.n, self.idle_s, self.got = source, n, idle_s, 0

    def messages(self) -> Iterator[Any]:
        last = time.monotonic()
        for m in self.source.messages():
            if m is not None:
                self.got += 1
                last = time.monotonic()
            yield m
            if self.got >= self.n or time.monotonic() - last > self.idle_s:
                return

    def close(self) -> None:
        self.source.close()
