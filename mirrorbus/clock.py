"""Time and identifiers, injected so that tests and replay never depend on the wall clock.

``evolve`` never reads a clock: times enter the system here, on the events a service emits.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


_prefix = ""
_serial = itertools.count()


def _reseed() -> None:
    """A fresh random prefix: at import, and in every child after ``fork``, so that two
    processes never share a prefix and so never make the same id."""
    global _prefix, _serial
    _prefix = os.urandom(8).hex()
    _serial = itertools.count()


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_id() -> str:
    """A unique id for an event, command or run (also its ``Nats-Msg-Id``): 32 hex digits,
    as uuid4's were, made of 64 random bits per process and a 64-bit serial.

    The way NATS makes its NUIDs: an id costs no system call (uuid4 read ``/dev/urandom``
    each time: a worker makes four or more per run), and a restarted process draws a new
    prefix, so an id is never reused within the de-duplication window.
    """
    return f"{_prefix}{next(_serial):016x}"
