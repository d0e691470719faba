"""Manager replicas: one name per running manager, never two processes behind one name.

A manager's name is its durable consumer on the event stream (``Subjects.manager_consumer``)
and, under ``mirrorbus up``, its view's file.  Two processes with one name would split the
consumer's events between them (each view missing what the other got), and a manager that
starts deletes and re-creates its consumer from its own view's position.  So a manager first
asks ``<prefix>.replica.<name>.ping``, the subject only the replica of that name answers:

- "no responders": nobody holds the name, the manager may take it.  A replica that was
  SIGKILLed or crashed lost its connection with its process, so the server no longer knows
  its subscription: it never blocks the name.  (A host that vanished without closing its
  connections is dropped by the server after its missed pings, two minutes by default.)
- an answer: a live replica holds the name; refused, saying where it runs.
- no answer in time: a process holds the name but does not answer (stopped with SIGSTOP,
  or stuck); refused too, since it may resume and go on reading from the consumer.

Once it answers on that subject itself, the manager asks again and gathers every answer for
a moment: of two managers started with one name at the same instant, both see the other, and
the later one (by start time, then instance id) gives way.

One case is left: a replica hung for longer than the server waits (its connection dropped),
its name taken by a new process meanwhile, which made the consumer again; resumed, the old
one reconnects and would pull from the new consumer.  So a replica looks at its consumer
every few seconds (:func:`fence`): made again by someone else (or gone), it stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import anyio
import msgspec

from mirrorbus.bus import Bus, consumer_created
from mirrorbus.errors import BusError, BusTimeout, NameInUse, NoResponders, PermissionDenied
from mirrorbus.events.wire import PingInfo, Reply
from mirrorbus.manager.queries import ReplicaIdentity

CLAIM_TIMEOUT = 2.0
"""Seconds a starting manager waits for the holder of its name to answer."""
RACE_WINDOW = 0.5
"""Seconds a started manager gathers the answers of others with its name."""


def _holder(info: PingInfo) -> str:
    since = datetime.fromtimestamp(info.started_at, UTC).astimezone()
    return (
        f"it runs on {info.host or '?'} (pid {info.pid}, since {since:%Y-%m-%d %H:%M:%S}, "
        f"view at event {info.position})"
    )


def _in_use(name: str, why: str) -> NameInUse:
    return NameInUse(
        f"manager name {name!r} is in use: {why}; give this manager another name "
        "(--name, or [manager] name) or stop that one first"
    )


async def claim(bus: Bus, name: str, *, timeout: float = CLAIM_TIMEOUT) -> None:
    """Raise :class:`NameInUse` if a manager with ``name`` is connected (see the module)."""
    subject = bus.subjects.replica_api(name, "ping")
    try:
        data = await bus.request(subject, b"{}", timeout=timeout)
    except NoResponders:
        return
    except PermissionDenied:
        raise
    except BusTimeout:
        raise _in_use(
            name,
            f"a process answering for it is connected but did not answer within {timeout:g}s "
            "(stopped or stuck?); the server drops its connection once it stops answering "
            "the server's pings",
        ) from None
    except BusError as exc:
        raise BusError(f"cannot check whether manager name {name!r} is free: {exc}") from None
    try:
        reply = msgspec.json.decode(data, type=Reply[PingInfo])
    except msgspec.DecodeError:
        raise _in_use(name, "another process answers for it") from None
    if reply.data is None:
        raise _in_use(name, "another process answers for it")
    raise _in_use(name, _holder(reply.data))


async def others_answer(bus: Bus, *, timeout: float = 1.0) -> bool:
    """Whether another replica answers queries now (asked of every replica at once)."""
    try:
        await bus.request(bus.subjects.every_replica_api("ping"), b"{}", timeout=timeout)
    except BusError:
        return False  # nobody subscribed, or only hung ones: this one is needed
    return True


FENCE_EVERY = 5.0
"""Seconds between two looks at the replica's own consumer."""


async def fence(
    bus: Bus, name: str, created: Callable[[], datetime | None], *, every: float = FENCE_EVERY
) -> None:
    """Raise :class:`NameInUse` once replica ``name``'s consumer was made at another time
    than ``created()`` says (see the module).  A look that fails (the server away) is tried
    again at the next turn; a consumer that is gone is the projector's to make again."""
    consumer = bus.subjects.manager_consumer(name)
    while True:
        await anyio.sleep(every)
        ours = created()
        if ours is None:
            continue
        try:
            made = await consumer_created(bus, bus.subjects.evt_stream, consumer)
        except BusError:
            continue
        if ours == created() and made != ours:  # not made again by our projector
            raise _in_use(
                name,
                f"its consumer {consumer} was made again by another manager while this one "
                "was cut off or stopped; this one stops",
            )


async def check_alone(bus: Bus, me: ReplicaIdentity, *, window: float = RACE_WINDOW) -> None:
    """Once this replica answers for its name: raise :class:`NameInUse` if another process
    with the same name answers too and started first."""
    subject = bus.subjects.replica_api(me.name, "ping")
    others: list[PingInfo] = []
    for data in await bus.gather(subject, b"{}", window=window):
        with contextlib.suppress(msgspec.DecodeError):
            reply = msgspec.json.decode(data, type=Reply[PingInfo])
            if reply.data is not None and reply.data.instance != me.instance:
                others.append(reply.data)
    mine = (me.started_at, me.instance)
    first = min(others, key=lambda o: (o.started_at, o.instance), default=None)
    if first is not None and (first.started_at, first.instance) < mine:
        raise _in_use(me.name, _holder(first))
