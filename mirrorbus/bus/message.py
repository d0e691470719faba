"""One message as the rest of mirrorbus sees it, whoever delivered it.

Services, subscriptions and consumers hand their callers a :class:`Message` instead of
nats-py's own type, so that nothing outside :mod:`mirrorbus.bus` needs nats-py to read one,
and an in-memory bus can deliver the same thing.  No nats-py here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

__all__ = ["EPOCH", "Message", "Stored", "next_fetch_size", "stored_time"]


async def _no_ack() -> None:
    return None


@dataclass(frozen=True, slots=True)
class Message:
    """A delivered message: its subject, payload, headers and reply subject; for a
    consumer's delivery also its stream sequence, how many more wait, and its acknowledgement."""

    subject: str
    data: bytes
    headers: dict[str, str] | None = None
    reply: str | None = None
    seq: int = 0
    """The stream sequence of a consumer's delivery (0 for a core message)."""
    pending: int = 0
    """A consumer's delivery: how many messages of the consumer wait after this one."""
    _ack: Callable[[], Awaitable[None]] = field(default=_no_ack, repr=False, compare=False)

    async def ack(self) -> None:
        """Acknowledge a consumer's delivery (and, on an ack-all consumer, every one before
        it); raises :class:`mirrorbus.errors.BusError` if the server cannot be told."""
        await self._ack()


def next_fetch_size(msgs: Sequence[Message], batch: int) -> int:
    """How many messages a consumer's next fetch should ask for: ``batch`` while the
    consumer has a backlog (the last message says how many are still pending), else one.

    nats-py's fetch of more than one first probes for what is there (a request and its "no
    messages" reply) and only then waits; a fetch of one is a single waiting request.  A
    caught-up projector or worker thus waits for the next event at the cost of one request
    instead of three, and a backlog is still taken ``batch`` at a time.
    """
    if msgs and msgs[-1].pending:
        return batch
    return 1


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored message: its stream sequence, subject, payload and when it was stored."""

    seq: int
    subject: str
    data: bytes
    time: datetime
    replayed: bool = False
    """A copy of an older message that the server stored as an answer (see
    :func:`mirrorbus.bus.replayed`), not an append."""


def stored_time(text: str) -> datetime:
    """``Nats-Time-Stamp`` (RFC 3339 with nanoseconds) as a time, rounded down to the
    microsecond (so that a time printed from it and given back as a start finds it again)."""
    text = text.strip().removesuffix("Z")
    whole, _, fraction = text.partition(".")
    try:
        base = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    except ValueError:
        return EPOCH
    micros = int((fraction + "000000")[:6]) if fraction.isdigit() else 0
    return base + timedelta(microseconds=micros)
