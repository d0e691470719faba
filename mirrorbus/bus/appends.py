"""Acknowledged appends in flight: the worker outbox's pipeline over one connection.

A plain :meth:`mirrorbus.bus.Bus.append` waits for each PubAck before the next publish; the
outbox sends many and takes their acknowledgements in order, so that a backlog is sent at the
speed of the connection, not of one round trip per event.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec
from nats.aio.msg import Msg

from mirrorbus.errors import BusError

if TYPE_CHECKING:
    from mirrorbus.bus.connection import Bus

__all__ = ["AppendPipeline"]


class _AckError(msgspec.Struct):
    description: str = ""


class _Ack(msgspec.Struct):
    """A JetStream PubAck, or its error: the fields the pipeline reads."""

    seq: int = 0
    error: _AckError | None = None


_ACK = msgspec.json.Decoder(_Ack)


class AppendPipeline:
    """Acknowledged appends in flight on one connection, their PubAcks taken in order.

    What nats-py's ``publish_async`` does, without what its generality costs per message
    (random reply tokens read from ``/dev/urandom``, a future, a semaphore, JSON into a
    dataclass): each append gets the next serial as the last token of its reply subject, and
    the replies wait in a dict until :meth:`ack` takes them.  The server stores one
    connection's publishes in order, so the caller takes the acks in the order it sent.
    """

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._prefix = ""
        self._next = 0
        self._floor = 0  # replies below this serial are no longer awaited
        self._replies: dict[int, Msg] = {}
        self._waiting: tuple[int, asyncio.Future[Msg]] | None = None

    async def _start(self) -> None:
        self._prefix = f"{self._bus.nc.new_inbox()}."
        await self._bus.nc.subscribe(f"{self._prefix}*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        try:
            serial = int(msg.subject[len(self._prefix) :])
        except ValueError:
            return
        if serial < self._floor:
            return  # the reply of an append that was given up on: sent again since
        waiting = self._waiting
        if waiting is not None and waiting[0] == serial and not waiting[1].done():
            waiting[1].set_result(msg)
        else:
            self._replies[serial] = msg

    async def send(self, subject: str, data: bytes, msg_id: str) -> int:
        """Publish one append (``Nats-Msg-Id`` = ``msg_id``); return its serial for :meth:`ack`."""
        if not self._prefix:
            await self._start()
        serial = self._next
        self._next += 1
        await self._bus.nc.publish(
            subject, data, reply=f"{self._prefix}{serial}", headers={"Nats-Msg-Id": msg_id}
        )
        return serial

    async def ack(self, serial: int) -> int:
        """Wait for the PubAck of ``serial``; its stream sequence, or :class:`BusError` if the
        server refused the append (cancel the wait to give up on it)."""
        msg = self._replies.pop(serial, None)
        if msg is None:
            future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
            self._waiting = (serial, future)
            try:
                msg = await future
            finally:
                self._waiting = None
        if msg.headers and msg.headers.get("Status") == "503":
            raise BusError("no stream stores the subject (no responders)")
        try:
            reply = _ACK.decode(msg.data)
        except msgspec.DecodeError as exc:
            raise BusError(f"unreadable acknowledgement: {exc}") from None
        if reply.error is not None:
            raise BusError(f"append refused: {reply.error.description}")
        return reply.seq

    def forget(self) -> None:
        """Give up on every append sent so far: their late replies are dropped."""
        self._floor = self._next
        self._replies.clear()
