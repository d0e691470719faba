"""The bus in memory: what :class:`~mirrorbus.bus.Bus` asks of nats-py, answered in this process.

For unit tests of the worker, the manager and the ctl that need no server: a
:class:`MemoryServer` holds the streams (made by ``Bus.ensure_streams``, a stream per subject
prefix: events, commands, snapshots), the core subscriptions and the durable consumers, and
:meth:`MemoryServer.connect` gives a real :class:`~mirrorbus.bus.Bus` whose nats-py client and
JetStream context are this module's stand-ins.  So every bus API the services use runs
unchanged and in milliseconds: appends with sequences and de-duplication by message id, the
outbox's pipeline, pull consumers with fetch, acknowledgement (``all`` or ``explicit``) and
delivery again after ``ack_wait``, batched direct gets and wake-ups, stored-message gets,
request/reply (queue groups, "no responders", answers in parts) and services.

What only a server shows is not here: permissions, TLS, clustering, leaders, limits other than
one message per subject on a stream that asks for it.  Those stay with the tests that start a
real nats-server.  :meth:`MemoryServer.lose` drops a consumer's next delivery of one sequence,
as a slow client's lost message would.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import anyio
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from mirrorbus.bus.connection import SEQUENCE_HEADERS, Bus
from mirrorbus.config.bus import BusSettings
from mirrorbus.events.subjects import Subjects

__all__ = ["MemoryServer", "matches"]

MAX_PAYLOAD = 1024 * 1024
"""Bytes of one message, as nats-server's default ``max_payload``."""


def matches(pattern: str, subject: str) -> bool:
    """Whether ``subject`` matches the subject filter ``pattern`` (``*`` one token, ``>``
    one or more at the end)."""
    want = pattern.split(".")
    have = subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def _counted(stored: dict[str, str] | None, *, added: int) -> dict[str, str]:
    """A delivered message's headers: the stored ones, and how many ``Nats-Sequence``
    headers the message carries (the stored one of a server's stored answer, plus ``added``
    by a direct get), as our client counts them."""
    headers = dict(stored or {})
    count = ("Nats-Sequence" in headers) + added
    if count:
        headers[SEQUENCE_HEADERS] = str(count)
    return headers


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


@dataclass
class _Stored:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None
    time: datetime


@dataclass
class _Consumer:
    stream: _Stream
    config: ConsumerConfig
    created: datetime
    next_seq: int
    delivered: dict[int, float] = field(default_factory=dict)  # unacknowledged: seq -> when
    deliveries: dict[int, int] = field(default_factory=dict)  # seq -> times delivered
    lose: set[int] = field(default_factory=set)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    consumer_seq: int = 0

    def _wanted(self, msg: _Stored) -> bool:
        filter_subject = self.config.filter_subject
        return not filter_subject or matches(filter_subject, msg.subject)

    def pending_after(self, seq: int) -> int:
        return sum(1 for s, m in self.stream.msgs.items() if s > seq and self._wanted(m))

    def take(self, batch: int) -> list[_Stored]:
        """Up to ``batch`` messages to deliver now: due redeliveries first, then new ones."""
        now = anyio.current_time()
        wait = float(self.config.ack_wait or 30.0)
        limit = self.config.max_ack_pending or 1000
        out: list[_Stored] = []
        for seq, at in sorted(self.delivered.items()):
            if len(out) >= batch:
                break
            if now - at >= wait and seq in self.stream.msgs:
                out.append(self.stream.msgs[seq])
        for seq in sorted(s for s in self.stream.msgs if s >= self.next_seq):
            if len(out) >= batch or len(self.delivered) + len(out) >= limit:
                break
            msg = self.stream.msgs[seq]
            self.next_seq = seq + 1
            if self._wanted(msg):
                out.append(msg)
        kept = []
        for msg in out:
            if self.config.ack_policy != AckPolicy.NONE:
                self.delivered[msg.seq] = now
            self.deliveries[msg.seq] = self.deliveries.get(msg.seq, 0) + 1
            if msg.seq in self.lose:
                self.lose.discard(msg.seq)
                continue  # lost on the way: delivered, never received
            kept.append(msg)
        return kept

    def ack(self, seq: int) -> None:
        if self.config.ack_policy == AckPolicy.ALL:
            for s in [s for s in self.delivered if s <= seq]:
                del self.delivered[s]
        else:
            self.delivered.pop(seq, None)


@dataclass
class _Stream:
    config: StreamConfig
    msgs: dict[int, _Stored] = field(default_factory=dict)
    last_seq: int = 0
    ids: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, _Consumer] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name or ""

    def stores(self, subject: str) -> bool:
        return any(matches(p, subject) for p in self.config.subjects or ())

    def store(self, subject: str, data: bytes, headers: dict[str, str] | None) -> tuple[int, bool]:
        """Store a message; its sequence, and whether it was a duplicate (by message id)."""
        msg_id = (headers or {}).get("Nats-Msg-Id")
        if msg_id and msg_id in self.ids:
            return self.ids[msg_id], True
        self.last_seq += 1
        self.msgs[self.last_seq] = _Stored(
            self.last_seq, subject, data, dict(headers) if headers else None, datetime.now(UTC)
        )
        if msg_id:
            self.ids[msg_id] = self.last_seq
        if self.config.max_msgs_per_subject == 1:
            for seq in [s for s, m in self.msgs.items() if m.subject == subject][:-1]:
                del self.msgs[seq]
        for consumer in self.consumers.values():
            consumer.arrived.set()
        return self.last_seq, False

    @property
    def first_seq(self) -> int:
        return min(self.msgs, default=self.last_seq + 1)

    def last_on(self, subject: str) -> _Stored | None:
        found = [m for m in self.msgs.values() if matches(subject, m.subject)]
        return found[-1] if found else None


class _Sub:
    """A core subscription: messages handed to its callback in order, by its own task."""

    def __init__(
        self,
        client: _Client,
        subject: str,
        queue: str,
        cb: Callable[[Msg], Awaitable[None]] | None,
    ) -> None:
        self._client = client
        self.subject = subject
        self.queue = queue
        self._cb = cb
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            msg = await self._queue.get()
            if self._cb is not None:
                try:
                    await self._cb(msg)
                except Exception:  # as nats-py: a failing callback does not end the subscription
                    continue

    def deliver(self, msg: Msg) -> None:
        self._queue.put_nowait(msg)

    async def unsubscribe(self) -> None:
        self._client.server._subs.discard(self)
        self._task.cancel()


class MemoryServer:
    """Streams, subscriptions and consumers shared by the buses :meth:`connect` makes."""

    def __init__(self) -> None:
        self.streams: dict[str, _Stream] = {}
        self._subs: set[_Sub] = set()

    def connect(
        self,
        prefix: str = "mirrorbus",
        *,
        name: str = "memory",
        role: str = "manager",
        certs: Path | None = None,
    ) -> Bus:
        """A :class:`Bus` on this server.  Its settings name ``role``'s certificate files in
        ``certs`` (default: names only); the bus never reads them (no TLS here), but its
        users may: the ctl takes a command's issuer and its operator token from its
        certificate."""
        where = certs or Path()
        settings = BusSettings(
            servers=("memory://",),
            ca_cert=where / "ca.crt",
            cert=where / f"{role}.crt",
            key=where / f"{role}.key",
            prefix=prefix,
            name=name,
        )
        client = _Client(self)
        return Bus(
            nc=cast(Any, client),
            js=cast(Any, _JetStream(client)),
            subjects=Subjects(prefix),
            settings=settings,
        )

    async def close(self) -> None:
        """End every subscription of every bus made here."""
        for sub in list(self._subs):
            await sub.unsubscribe()

    def lose(self, stream: str, consumer: str, seq: int) -> None:
        """The next delivery of ``seq`` by ``consumer`` is lost on the way."""
        self.streams[stream].consumers[consumer].lose.add(seq)

    # -- routing -------------------------------------------------------------------------
    def route(
        self,
        client: _Client,
        subject: str,
        data: bytes,
        reply: str,
        headers: dict[str, str] | None,
    ) -> None:
        if subject.startswith("$JS.ACK."):
            self._ack(subject)
            return
        if subject.startswith("$JS.API.DIRECT.GET."):
            self._direct_get(client, subject.removeprefix("$JS.API.DIRECT.GET."), data, reply)
            return
        stream = next((s for s in self.streams.values() if s.stores(subject)), None)
        if stream is not None:
            seq, duplicate = stream.store(subject, data, headers)
            if reply:
                ack = {"stream": stream.name, "seq": seq}
                if duplicate:
                    ack["duplicate"] = True
                self._send(client, reply, json.dumps(ack).encode(), "", None)
            if duplicate:
                return
            self._send(client, subject, data, "", headers)  # stored: also seen by subscribers
            return
        if not self._send(client, subject, data, reply, headers) and reply:
            self._send(client, reply, b"", "", {"Status": "503"})  # no responders

    def _send(
        self, client: _Client, subject: str, data: bytes, reply: str, headers: dict[str, str] | None
    ) -> bool:
        """Hand a message to every matching subscription (one per queue group); whether
        anyone got it."""
        groups: dict[str, list[_Sub]] = {}
        got = False
        for sub in list(self._subs):
            if not matches(sub.subject, subject):
                continue
            if sub.queue:
                groups.setdefault(sub.queue, []).append(sub)
                continue
            sub.deliver(Msg(cast(Any, sub._client), subject, reply, data, headers))
            got = True
        for members in groups.values():
            sub = secrets.choice(members)
            sub.deliver(Msg(cast(Any, sub._client), subject, reply, data, headers))
            got = True
        return got

    def _ack(self, subject: str) -> None:
        tokens = subject.split(".")
        stream = self.streams.get(tokens[2])
        consumer = stream.consumers.get(tokens[3]) if stream else None
        if consumer is not None:
            consumer.ack(int(tokens[5]))

    def _direct_get(self, client: _Client, name: str, data: bytes, reply: str) -> None:
        stream = self.streams.get(name)
        if stream is None:
            self._send(client, reply, b"", "", {"Status": "503"})
            return
        request = json.loads(data or b"{}")
        wanted = request.get("next_by_subj") or ">"
        batch = int(request.get("batch", 1))
        max_bytes = int(request.get("max_bytes", 0)) or None
        if "start_time" in request:
            start_time = datetime.fromisoformat(request["start_time"].replace("Z", "+00:00"))
            found = [m for m in stream.msgs.values() if m.time >= start_time]
            start = found[0].seq if found else stream.last_seq + 1
        else:
            start = int(request.get("seq", 1))
        chosen: list[_Stored] = []
        size = 0
        for seq in sorted(s for s in stream.msgs if s >= start):
            msg = stream.msgs[seq]
            if not matches(wanted, msg.subject):
                continue
            if len(chosen) >= batch or (max_bytes and chosen and size + len(msg.data) > max_bytes):
                break
            chosen.append(msg)
            size += len(msg.data)
        if not chosen:
            self._send(
                client, reply, b"", "", {"Status": "404", "Description": "Message Not Found"}
            )
            return
        previous = 0
        for msg in chosen:
            headers = _counted(msg.headers, added=1)
            headers.update(
                {
                    "Nats-Stream": name,
                    "Nats-Subject": msg.subject,
                    "Nats-Sequence": str(msg.seq),
                    "Nats-Time-Stamp": _stamp(msg.time),
                    "Nats-Num-Pending": "0",
                    "Nats-Last-Sequence": str(previous),
                }
            )
            previous = msg.seq
            self._send(client, reply, msg.data, "", headers)
        pending = sum(
            1 for s, m in stream.msgs.items() if s > chosen[-1].seq and matches(wanted, m.subject)
        )
        self._send(
            client,
            reply,
            b"",
            "",
            {
                "Status": "204",
                "Description": "EOB",
                "Nats-Num-Pending": str(pending),
                "Nats-Last-Sequence": str(previous),
            },
        )


class _Client:
    """What :class:`Bus` uses of nats-py's ``Client``."""

    max_payload = MAX_PAYLOAD
    connected_url = None

    def __init__(self, server: MemoryServer) -> None:
        self.server = server
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    def new_inbox(self) -> str:
        return f"_INBOX.{secrets.token_hex(8)}"

    async def subscribe(
        self,
        subject: str,
        queue: str = "",
        cb: Callable[[Msg], Awaitable[None]] | None = None,
        **_limits: int,
    ) -> _Sub:
        sub = _Sub(self, subject, queue, cb)
        self.server._subs.add(sub)
        return sub

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        reply: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        if self._closed:
            raise nats.errors.ConnectionClosedError
        self.server.route(self, subject, payload, reply, headers)
        await asyncio.sleep(0)

    async def request(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float = 0.5,
        headers: dict[str, str] | None = None,
    ) -> Msg:
        answer: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

        async def on_reply(msg: Msg) -> None:
            if not answer.done():
                answer.set_result(msg)

        inbox = self.new_inbox()
        sub = await self.subscribe(inbox, cb=on_reply)
        try:
            await self.publish(subject, payload, reply=inbox, headers=headers)
            try:
                msg = await asyncio.wait_for(answer, timeout)
            except TimeoutError:
                raise nats.errors.TimeoutError from None
        finally:
            await sub.unsubscribe()
        if msg.headers and msg.headers.get("Status") == "503":
            raise nats.errors.NoRespondersError
        return msg

    async def flush(self, timeout: float = 2.0) -> None:
        await asyncio.sleep(0)

    def jetstream(self, timeout: float = 5.0) -> _JetStream:
        return _JetStream(self)

    async def close(self) -> None:
        self._closed = True
        for sub in [s for s in self.server._subs if s._client is self]:
            await sub.unsubscribe()


@dataclass
class _State:
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    subjects: dict[str, int] | None


@dataclass
class _Info:
    state: _State


@dataclass
class _ConsumerInfo:
    created: datetime


@dataclass
class _Raw:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str] | None
    time: datetime


@dataclass
class _PubAck:
    seq: int


class _JetStream:
    """What :class:`Bus` and its helpers use of nats-py's JetStream context."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self._server = client.server

    def _stream(self, name: str) -> _Stream:
        stream = self._server.streams.get(name)
        if stream is None:
            raise nats.js.errors.NotFoundError(code=404, description="stream not found")
        return stream

    async def account_info(self) -> None:
        return None

    async def add_stream(self, config: StreamConfig) -> None:
        stream = self._server.streams.get(config.name or "")
        if stream is None:
            self._server.streams[config.name or ""] = _Stream(config)
        else:
            stream.config = config

    update_stream = add_stream

    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> _PubAck:
        stream = next((s for s in self._server.streams.values() if s.stores(subject)), None)
        if stream is None:
            raise nats.errors.NoRespondersError
        seq, duplicate = stream.store(subject, payload, headers)
        if not duplicate:
            self._server._send(self._client, subject, payload, "", headers)
        await asyncio.sleep(0)
        return _PubAck(seq)

    async def stream_info(self, name: str, subjects_filter: str | None = None) -> _Info:
        stream = self._stream(name)
        counts: dict[str, int] | None = None
        if subjects_filter is not None:
            counts = {}
            for msg in stream.msgs.values():
                if matches(subjects_filter, msg.subject):
                    counts[msg.subject] = counts.get(msg.subject, 0) + 1
        return _Info(
            _State(
                messages=len(stream.msgs),
                bytes=sum(len(m.data) for m in stream.msgs.values()),
                first_seq=stream.first_seq if stream.msgs else 0,
                last_seq=stream.last_seq,
                subjects=counts,
            )
        )

    def _raw(self, msg: _Stored | None, direct: bool) -> _Raw:
        if msg is None:
            raise nats.js.errors.NotFoundError(code=404, description="no message found")
        headers = msg.headers
        if direct:  # the answer's headers, as our client counts them (see SEQUENCE_HEADERS)
            headers = _counted(msg.headers, added=1)
            headers.update({"Nats-Subject": msg.subject, "Nats-Sequence": str(msg.seq)})
        return _Raw(msg.seq, msg.subject, msg.data, headers, msg.time)

    async def get_msg(self, stream: str, seq: int | None = None, direct: bool = False) -> _Raw:
        if direct and stream not in self._server.streams:
            raise nats.errors.NoRespondersError
        return self._raw(self._stream(stream).msgs.get(seq or 0), direct)

    async def get_last_msg(self, stream: str, subject: str, direct: bool = False) -> _Raw:
        if direct and stream not in self._server.streams:
            raise nats.errors.NoRespondersError
        return self._raw(self._stream(stream).last_on(subject), direct)

    async def add_consumer(self, stream: str, config: ConsumerConfig) -> _ConsumerInfo:
        s = self._stream(stream)
        name = config.durable_name or config.name or secrets.token_hex(4)
        existing = s.consumers.get(name)
        if existing is not None:
            if existing.config != config:
                raise nats.js.errors.APIError(
                    code=400, err_code=10148, description="consumer already exists"
                )
            return _ConsumerInfo(existing.created)
        if config.deliver_policy == DeliverPolicy.BY_START_SEQUENCE:
            start = int(config.opt_start_seq or 1)
        elif config.deliver_policy == DeliverPolicy.NEW:
            start = s.last_seq + 1
        else:
            start = 1
        consumer = _Consumer(s, config, datetime.now(UTC), start)
        s.consumers[name] = consumer
        return _ConsumerInfo(consumer.created)

    async def delete_consumer(self, stream: str, name: str) -> bool:
        s = self._stream(stream)
        if s.consumers.pop(name, None) is None:
            raise nats.js.errors.NotFoundError(code=404, description="consumer not found")
        return True

    async def consumer_info(self, stream: str, name: str) -> _ConsumerInfo:
        consumer = self._stream(stream).consumers.get(name)
        if consumer is None:
            raise nats.js.errors.NotFoundError(code=404, description="consumer not found")
        return _ConsumerInfo(consumer.created)

    async def pull_subscribe_bind(
        self, consumer: str, stream: str, inbox_prefix: bytes = b"_INBOX."
    ) -> _PullSub:
        return _PullSub(self._client, stream, consumer)


class _PullSub:
    def __init__(self, client: _Client, stream: str, consumer: str) -> None:
        self._client = client
        self._stream = stream
        self._consumer = consumer

    async def fetch(self, batch: int = 1, timeout: float | None = 5.0) -> list[Msg]:
        stream = self._client.server.streams.get(self._stream)
        consumer = stream.consumers.get(self._consumer) if stream else None
        if stream is None or consumer is None:
            raise nats.js.errors.NotFoundError(code=404, description="consumer not found")
        with anyio.move_on_after(timeout or 5.0):
            while True:
                consumer.arrived.clear()
                got = consumer.take(batch)
                if got:
                    return [self._msg(consumer, m) for m in got]
                # (woken by an append, or in a moment for a delivery due again)
                with anyio.move_on_after(0.05):
                    await consumer.arrived.wait()
                if self._consumer not in stream.consumers:
                    raise nats.js.errors.NotFoundError(code=404, description="consumer deleted")
        raise nats.errors.TimeoutError

    def _msg(self, consumer: _Consumer, stored: _Stored) -> Msg:
        consumer.consumer_seq += 1
        reply = ".".join(
            (
                "$JS.ACK",
                self._stream,
                self._consumer,
                str(consumer.deliveries.get(stored.seq, 1)),
                str(stored.seq),
                str(consumer.consumer_seq),
                str(int(stored.time.timestamp() * 1e9)),
                str(consumer.pending_after(stored.seq)),
            )
        )
        headers = _counted(stored.headers, added=0) or None
        return Msg(cast(Any, self._client), stored.subject, reply, stored.data, headers)

    async def unsubscribe(self) -> None:
        return None
