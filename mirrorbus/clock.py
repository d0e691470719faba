"""Time and identifiers, injected so that tests and replay never depend on the wall clock.

``evolve`` never reads a clock: times enter the system here, on the events a service emits.
A service that waits for a time (the worker's schedule, its heartbeat and snapshot timers)
sleeps on the same clock it reads, so a test can drive it with a :class:`ManualClock`
instead of waiting in real time.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio
import anyio.lowlevel


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock (at once for ``seconds <= 0``)."""
        ...


class SystemClock:
    """The wall clock; sleeps are anyio's (monotonic: a wall-clock jump does not shorten
    them, so a loop that sleeps towards a wall-clock time re-reads the clock now and then)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0))


class ManualClock:
    """A clock that moves only when told, for tests (trio's ``MockClock`` without a run loop
    of its own): :meth:`now` is where :meth:`advance` has put it, and a :meth:`sleep` returns
    once the clock has been advanced to its deadline, never on its own.

    >>> clock = ManualClock(datetime(2024, 3, 1, 12, 0, tzinfo=UTC))
    >>> clock.advance(90)
    >>> clock.now().isoformat()
    '2024-03-01T12:01:30+00:00'
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock's time is timezone-aware (UTC)")
        self._now = start
        self._sleepers: list[tuple[datetime, anyio.Event]] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        entry = (self._now + timedelta(seconds=seconds), anyio.Event())
        self._sleepers.append(entry)
        try:
            await entry[1].wait()
        finally:
            if entry in self._sleepers:  # cancelled before its time
                self._sleepers.remove(entry)

    @property
    def next_wake(self) -> datetime | None:
        """The earliest deadline of a sleep in progress (None: nobody sleeps)."""
        return min((at for at, _ in self._sleepers), default=None)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward and wake every sleep whose deadline has come
        (the sleepers run at the caller's next checkpoint)."""
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += timedelta(seconds=seconds)
        due = [entry for entry in self._sleepers if entry[0] <= self._now]
        for entry in due:
            self._sleepers.remove(entry)
            entry[1].set()


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
