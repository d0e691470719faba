"""Durable pull consumers: made, bound, fetched from, deleted; in one place.

Only a manager makes consumers (a consumer's maker chooses where the server delivers, which no
permission can restrict): its projector's on the event stream, each worker's command consumer,
the gateway's.  Workers and the gateway only bind to theirs, fetch and acknowledge.

:class:`PullConsumer` is the fetch loop's one step for all of them: a fetch of what
:func:`next_fetch_size` says (the whole batch while a backlog waits, else one), an empty list
when nothing came in time, and a failed fetch logged, waited on for a second and (for a
consumer that may have been deleted or lost with a server) bound again, so that a caller's
loop is only what it does with the messages.  nats-py's errors become
:mod:`mirrorbus.errors` here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import anyio
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mirrorbus.bus.connection import Bus, translate
from mirrorbus.bus.message import Message, next_fetch_size
from mirrorbus.errors import BusError, NotFound

__all__ = [
    "ConsumerSpec",
    "PullConsumer",
    "consumer_created",
    "delete_consumer",
    "delivered",
    "drop_legacy_consumers",
    "ensure_command_consumer",
    "make_consumer",
    "next_fetch_size",
]

log = logging.getLogger(__name__)

FAILED_FETCH_PAUSE = 1.0
"""Seconds a consumer waits after a failed fetch before it fetches (or binds) again."""

_ALREADY_EXISTS = 10148
"""JetStream's error code for a consumer that exists with another configuration."""


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """What a durable consumer is made with."""

    stream: str
    name: str
    filter_subject: str
    ack: Literal["all", "explicit"] = "explicit"
    """``all``: acknowledging a delivery acknowledges every one before it."""
    start: Literal["all", "new"] | int = "all"
    """Deliver every stored message, only those appended from now on, or from a sequence."""
    ack_wait: float = 30.0
    max_ack_pending: int = 256
    inactive_threshold: float | None = None

    def config(self) -> ConsumerConfig:
        by_sequence = isinstance(self.start, int) and self.start > 1
        deliver = (
            DeliverPolicy.BY_START_SEQUENCE
            if by_sequence
            else DeliverPolicy.NEW
            if self.start == "new"
            else DeliverPolicy.ALL
        )
        return ConsumerConfig(
            name=self.name,
            durable_name=self.name,
            filter_subject=self.filter_subject,
            ack_policy=AckPolicy.ALL if self.ack == "all" else AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_ack_pending=self.max_ack_pending,
            deliver_policy=deliver,
            opt_start_seq=self.start if by_sequence else None,  # type: ignore[arg-type]
            inactive_threshold=self.inactive_threshold,
        )


async def make_consumer(
    bus: Bus, spec: ConsumerSpec, *, keep_existing: bool = False
) -> datetime | None:
    """Make the consumer ``spec`` describes; when the server made it.

    ``keep_existing``: a consumer of that name made with another configuration is kept as it
    is (its position with it), and None returned; else the server's refusal is a
    :class:`BusError`.
    """
    what = f"consumer {spec.name} on {spec.stream}"
    try:
        info = await bus.js.add_consumer(spec.stream, spec.config())
    except nats.js.errors.APIError as exc:
        if keep_existing and exc.err_code == _ALREADY_EXISTS:
            return None
        raise translate(exc, f"cannot make {what}") from None
    except (nats.errors.Error, TimeoutError) as exc:
        raise translate(exc, f"cannot make {what}") from None
    return info.created


async def delete_consumer(bus: Bus, stream: str, name: str) -> bool:
    """Delete a consumer; False if there was none."""
    try:
        await bus.js.delete_consumer(stream, name)
    except nats.js.errors.NotFoundError:
        return False
    except (nats.errors.Error, TimeoutError) as exc:
        raise translate(exc, f"cannot delete consumer {name} on {stream}") from None
    return True


async def consumer_created(bus: Bus, stream: str, name: str) -> datetime | None:
    """When the server made consumer ``name`` (:class:`NotFound` if it does not exist)."""
    try:
        info = await bus.js.consumer_info(stream, name)
    except (nats.errors.Error, TimeoutError) as exc:
        raise translate(exc, f"cannot read consumer {name} on {stream}") from None
    created: datetime | None = info.created
    return created


async def drop_legacy_consumers(bus: Bus, replica: str) -> None:
    """Delete the event stream's consumers that older versions named ``manager`` and
    ``manager-<replica>``: nothing reads them any more, and a name a worker's token can take
    (no ``-`` first) must not stay a manager's."""
    for name in ("manager", f"manager-{replica}"):
        await delete_consumer(bus, bus.subjects.evt_stream, name)


async def ensure_command_consumer(bus: Bus, worker: str) -> None:
    """Make ``worker``'s durable command consumer if it does not exist (the manager's job: no
    worker may make a consumer).  The worker pulls from it and acknowledges each command; the
    configuration is the one workers used to make themselves, so an existing consumer is
    taken as it is."""
    s = bus.subjects
    name = s.worker_consumer(worker)
    try:
        await consumer_created(bus, s.cmd_stream, name)
        return
    except NotFound:
        pass
    except BusError as exc:
        raise BusError(f"cannot read the command consumer of {worker}: {exc}") from None
    spec = ConsumerSpec(
        stream=s.cmd_stream,
        name=name,
        filter_subject=s.worker_commands(worker),
        ack="explicit",
        start="all",
        ack_wait=30,
        max_ack_pending=256,
    )
    try:
        await make_consumer(bus, spec)
    except BusError as exc:
        raise BusError(f"cannot make the command consumer of {worker}: {exc}") from None


def delivered(msg: Msg) -> Message:
    """A consumer's delivery as a :class:`Message`: its stream sequence, what is pending
    after it, and its acknowledgement."""
    meta = msg.metadata

    async def ack() -> None:
        try:
            await msg.ack()
        except (nats.errors.Error, TimeoutError) as exc:
            raise translate(exc, f"cannot acknowledge {msg.subject}") from None

    return Message(
        subject=msg.subject,
        data=msg.data,
        headers=msg.headers,
        reply=msg.reply,
        seq=int(meta.sequence.stream),
        pending=int(meta.num_pending),
        _ack=ack,
    )


class PullConsumer:
    """A durable consumer this connection pulls from (made by a manager beforehand, or by
    ``make`` at each :meth:`bind`).

    ``batch`` is the most one fetch asks for, ``timeout`` how long a fetch waits for the
    first message.  ``rebind_on_error``: a failed fetch binds again (through ``make`` when
    given), for a consumer someone may have deleted or a server lost.
    """

    def __init__(
        self,
        bus: Bus,
        stream: str,
        name: str,
        *,
        batch: int,
        timeout: float,
        what: str = "",
        make: Callable[[], Awaitable[object]] | None = None,
        rebind_on_error: bool = False,
        inbox_prefix: str | None = None,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.name = name
        self.batch = batch
        self.timeout = timeout
        self.what = what or f"consumer {name}"
        self.make = make
        self.rebind_on_error = rebind_on_error
        self.inbox_prefix = inbox_prefix
        self._size = batch  # a new binding may find a backlog
        self._sub: JetStreamContext.PullSubscription | None = None

    async def bind(self, *, make: bool = True) -> None:
        """(Make the consumer again, if ``make`` and the consumer has a maker, then) bind to
        it; raises :class:`BusError` (:class:`NotFound` if it does not exist)."""
        await self.close()
        if make and self.make is not None:
            await self.make()
        try:
            if self.inbox_prefix is None:
                self._sub = await self.bus.js.pull_subscribe_bind(
                    consumer=self.name, stream=self.stream
                )
            else:
                self._sub = await self.bus.js.pull_subscribe_bind(
                    consumer=self.name,
                    stream=self.stream,
                    inbox_prefix=f"{self.inbox_prefix}.".encode(),
                )
        except (nats.errors.Error, TimeoutError) as exc:
            raise translate(exc, f"cannot bind to {self.what}") from None
        self._size = self.batch

    async def fetch(self, limit: int | None = None) -> list[Message]:
        """The next deliveries, at most ``limit`` (default: the whole batch while a backlog
        waits, else one); an empty list when none came within the timeout, or when the fetch
        failed (logged, then a pause and, with ``rebind_on_error``, a new binding)."""
        if self._sub is None:
            if not self.rebind_on_error:
                await self.bind()
            else:
                try:
                    await self.bind()
                except BusError as exc:
                    log.warning("%s; trying again", exc)
                    await anyio.sleep(FAILED_FETCH_PAUSE)
                    return []
        assert self._sub is not None
        try:
            msgs = await self._sub.fetch(limit or self._size, timeout=self.timeout)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except nats.errors.Error as exc:
            await self._failed(exc)
            return []
        got = [delivered(m) for m in msgs]
        self._size = next_fetch_size(got, self.batch)
        return got

    async def _failed(self, exc: Exception) -> None:
        if not self.rebind_on_error:
            log.warning("fetching from %s failed: %s", self.what, exc)
            await anyio.sleep(FAILED_FETCH_PAUSE)
            return
        log.warning("fetching from %s failed (%s); binding again", self.what, exc)
        await anyio.sleep(FAILED_FETCH_PAUSE)
        try:
            await self.bind()
        except BusError as failure:
            log.warning("%s; trying again", failure)

    async def close(self) -> None:
        """Stop pulling (the consumer stays on the server)."""
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
