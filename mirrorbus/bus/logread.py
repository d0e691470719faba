"""Reading a stream by sequence without a consumer: batched direct gets, and a wake-up.

Every reader of the event log (the manager's projector, ``manager rebuild``, ``mirrorbus
project``, ``ctl watch``/``ctl events``, a worker's restore) reads it here, with JetStream's
batched direct get: one request on ``$JS.API.DIRECT.GET.<stream>`` asks for up to ``batch``
messages from a sequence on (optionally only those of one subject filter), at most
``max_bytes`` of them (at least one, however large), and the server answers with the messages
and an end-of-batch status.  Why not consumers:

- **Nothing to steal or lose.**  A read names the sequence it starts from; the caller keeps
  its own position (the view stores it with the rows).  There is no delivery that someone else
  could pull, no consumer anyone could delete, and a message dropped on the way (a slow
  client) is noticed, because each message names the sequence of the one before it: the batch
  ends before the gap and the next read starts there.
- **Bounded in bytes.**  A batch stops at ``max_bytes``, so a log of oversized or malformed
  messages is read one bounded batch at a time instead of overflowing the client.
- **Only the manager makes consumers.**  Creating a consumer lets its maker choose where the
  server delivers (a push consumer's ``deliver_subject``), which no permission can restrict;
  readers and workers therefore have no consumer rights at all.

:class:`Wakeup` is the other half for a reader that follows the log: a core subscription on
the subjects it reads, used only as a signal that something was appended (the messages it
gets are ignored; they carry no sequence).  A lost wake-up costs at most ``poll`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
import nats.errors
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mirrorbus.bus.connection import Bus, replayed
from mirrorbus.bus.message import Stored, stored_time
from mirrorbus.errors import BusError

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_MAX_BYTES", "Batch", "LogReader", "Stored", "Wakeup"]

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
"""Bytes of messages one read asks for (the server sends at least one message, whatever its
size)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """What one read returned, in order, and how many matching messages are after it."""

    messages: list[Stored]
    pending: int

    @property
    def last(self) -> int:
        return self.messages[-1].seq if self.messages else 0


class LogReader:
    """Reads ``stream`` by sequence with batched direct gets, over one subscription.

    ``subject`` restricts the reads to one subject filter (wildcards allowed), applied by the
    server.  Not safe for concurrent reads on one instance: each caller reads its own way.
    """

    def __init__(
        self,
        bus: Bus,
        stream: str,
        *,
        subject: str | None = None,
        batch: int = 512,
        max_bytes: int = DEFAULT_MAX_BYTES,
        timeout: float = 5.0,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.subject = subject
        self.batch = batch
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._sub: Subscription | None = None
        self._prefix = ""
        self._serial = 0
        self._send: MemoryObjectSendStream[Msg] | None = None
        self._receive: MemoryObjectReceiveStream[Msg] | None = None

    async def _start(self) -> None:
        self._prefix = f"{self.bus.nc.new_inbox()}."
        # Room for a whole batch and one message over it: the server sends at least one.
        send, receive = anyio.create_memory_object_stream[Msg](self.batch + 2)
        self._send, self._receive = send, receive

        async def on_msg(msg: Msg) -> None:
            if msg.subject == f"{self._prefix}{self._serial}":
                with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                    send.send_nowait(msg)
            # else: the late answer of a read given up on

        self._sub = await self.bus.nc.subscribe(
            f"{self._prefix}*",
            cb=on_msg,
            pending_bytes_limit=2 * self.max_bytes + 64 * 1024 * 1024,
        )

    async def __aenter__(self) -> LogReader:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._send is not None:
            self._send.close()
        if self._receive is not None:
            self._receive.close()

    async def read(self, start: int | datetime, *, batch: int | None = None) -> Batch:
        """Up to ``batch`` messages from sequence ``start`` (or the first stored at or after
        the time ``start``) on; an empty batch when there is none yet.

        The batch ends early, never with a hole, if a message was lost on the way; reading
        again from after its last message fills it in.  Raises :class:`BusError` if the
        server does not answer within the timeout and nothing came.
        """
        if self._sub is None:
            await self._start()
        assert self._receive is not None
        while True:  # drop what a read given up on left behind
            try:
                self._receive.receive_nowait()
            except anyio.WouldBlock:
                break
        self._serial += 1
        request: dict[str, object] = {
            "batch": max(1, min(batch or self.batch, self.batch)),
            "max_bytes": self.max_bytes,
        }
        if isinstance(start, datetime):
            request["start_time"] = start.astimezone(UTC).isoformat().replace("+00:00", "Z")
        else:
            request["seq"] = max(1, start)
        if self.subject:
            request["next_by_subj"] = self.subject
        subject = f"$JS.API.DIRECT.GET.{self.stream}"
        started = time.monotonic()
        with self.bus._guard(subject) as scope:
            await self.bus.nc.publish(
                subject, json.dumps(request).encode(), reply=f"{self._prefix}{self._serial}"
            )
            return await self._collect(subject, started)
        assert scope.cancelled_caught
        raise self.bus._denied(subject)

    async def _collect(self, subject: str, started: float) -> Batch:
        assert self._receive is not None
        messages: list[Stored] = []
        previous = 0
        with anyio.move_on_after(self.timeout):
            async for msg in self._receive:
                headers = msg.headers or {}
                status = headers.get("Status")
                if status is not None:
                    return self._ended(status, headers, messages, previous)
                seq = int(headers.get("Nats-Sequence", "0"))
                before = int(headers.get("Nats-Last-Sequence", "0"))
                if messages and before != previous:
                    log.warning(
                        "reading %s: a message before sequence %d was lost on the way; "
                        "reading again from there",
                        self.stream,
                        seq,
                    )
                    return Batch(messages, pending=1)
                previous = seq
                messages.append(
                    Stored(
                        seq=seq,
                        subject=headers.get("Nats-Subject", ""),
                        data=bytes(msg.data),
                        time=stored_time(headers.get("Nats-Time-Stamp", "")),
                        replayed=replayed(headers, direct=True),
                    )
                )
        if messages:
            return Batch(messages, pending=1)  # the end was lost: the next read goes on
        self.bus.raise_if_denied(subject, started)
        raise BusError(f"no answer reading {self.stream} within {self.timeout:g}s")

    def _ended(
        self, status: str, headers: dict[str, str], messages: list[Stored], previous: int
    ) -> Batch:
        if status == "204":  # end of batch
            last = int(headers.get("Nats-Last-Sequence", "0") or 0)
            pending = int(headers.get("Nats-Num-Pending", "0") or 0)
            if last and last != previous:
                log.warning("reading %s: the batch's last message was lost", self.stream)
                return Batch(messages, pending=max(1, pending))
            return Batch(messages, pending=pending)
        if status == "404":  # nothing at or after the start (yet)
            return Batch(messages, pending=0)
        if status == "503":
            raise BusError(f"stream {self.stream} does not exist: has a manager ever run here?")
        description = headers.get("Description", "")
        raise BusError(f"reading {self.stream} failed: {status} {description}".rstrip())


class Wakeup:
    """A signal that something was appended to ``subjects`` (core subscriptions).

    Use: ``clear()``, read until caught up, then ``await wait(poll)``; anything appended after
    the ``clear()`` wakes the wait.
    """

    def __init__(self, bus: Bus, subjects: Sequence[str]) -> None:
        self.bus = bus
        self.subjects = list(subjects)
        self._event = anyio.Event()
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        async def on_msg(_msg: Msg) -> None:
            self._event.set()

        for subject in self.subjects:
            # Small limits: only the arrival matters, and a dropped signal costs one poll.
            self._subs.append(
                await self.bus.nc.subscribe(
                    subject, cb=on_msg, pending_msgs_limit=1024, pending_bytes_limit=1 << 20
                )
            )
        with contextlib.suppress(nats.errors.Error):
            await self.bus.nc.flush(timeout=5)

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    async def wait(self, poll: float) -> None:
        with anyio.move_on_after(poll):
            await self._event.wait()

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
