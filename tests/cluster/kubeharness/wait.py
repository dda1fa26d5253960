"""Polling assertions: wait for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call ``check`` until it returns without raising AssertionError; return its value.

    ``check`` asserts (or returns a value for the caller); the last assertion
    error is re-raised with the elapsed time when ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError as e:
            if time.monotonic() >= deadline:
                raise AssertionError(f"still failing after {timeout}s: {e}") from e
        time.sleep(interval)
