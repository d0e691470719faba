"""Time and identifiers, injected so that tests and replay never depend on the wall clock.

``evolve`` never reads a clock: times enter the system here, on the events a service emits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def new_id() -> str:
    """A unique id for an event, command or run (also its ``Nats-Msg-Id``)."""
    return uuid.uuid4().hex
