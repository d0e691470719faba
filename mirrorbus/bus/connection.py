"""The connection: mutual TLS, the streams, acknowledged appends, requests and services.

nats-py's errors are turned into :mod:`mirrorbus.errors` here.  A refused publish shows up in
nats-py as a timeout plus a "permissions violation" through ``error_cb``; :class:`Bus`
remembers the violations so that such a timeout is reported as :class:`PermissionDenied`, not
as a slow server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import nats.aio.client
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.aio.transport import TcpTransport
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from mirrorbus.bus.certsubject import common_name, read_subject, rfc4514
from mirrorbus.bus.message import EPOCH, Message, Stored, stored_time
from mirrorbus.bus.requests import (
    HEDGE_FIRST_WAIT,
    HEDGE_MAX_WAIT,
    PART_HEADER,
    PART_ROOM,
    answerable,
    next_answer,
)
from mirrorbus.bus.transport import restore_websocket_transport
from mirrorbus.config.bus import BusSettings, StreamSettings
from mirrorbus.errors import (
    BusError,
    BusTimeout,
    NoResponders,
    NotFound,
    PermissionDenied,
)
from mirrorbus.events.codec import MAX_ANSWER_PARTS, MAX_MESSAGE_BYTES
from mirrorbus.events.subjects import Subjects

__all__ = [
    "CLOSE_WAIT",
    "MAX_OUTSTANDING_PINGS",
    "PING_INTERVAL",
    "Bus",
    "StreamState",
    "Subscription",
    "certificate_identity",
    "certificate_role",
    "connect",
    "tls_context",
]

log = logging.getLogger(__name__)

_ROLES_WITH_INBOX = ("manager", "admin", "reader", "gateway")


def certificate_role(cert: Path) -> str | None:
    """The role of one of our client certificates other than a worker's, from the common
    name of its subject (``mirrorbus-admin`` gives ``admin``, an operator's own
    ``mirrorbus-admin-alice`` gives ``admin-alice``); None for a worker's or any other.

    A client connects with its role's inbox prefix, the only one its user may subscribe to.
    """
    subject = read_subject(cert)
    cn = None if subject is None else common_name(subject)
    if cn is None:
        return None
    for role in _ROLES_WITH_INBOX:
        if cn == f"mirrorbus-{role}" or (
            role in ("admin", "reader") and cn.startswith(f"mirrorbus-{role}-")
        ):
            return cn.removeprefix("mirrorbus-")  # an operator's: its role and its name
    return None


def certificate_identity(cert: Path) -> str:
    """The subject of our client certificate (``CN=mirrorbus-admin``), recorded as the
    issuer of commands; "" if it cannot be read."""
    subject = read_subject(cert)
    return "" if subject is None else rfc4514(subject)


def tls_context(settings: BusSettings) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(settings.ca_cert))
        ctx.load_cert_chain(str(settings.cert), str(settings.key))
    except (OSError, ssl.SSLError) as exc:
        raise BusError(
            f"cannot load TLS files (ca {settings.ca_cert}, cert {settings.cert}): {exc}"
        ) from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def translate(exc: BaseException, doing: str) -> BusError:
    """nats-py's error (or a timeout) as the :mod:`mirrorbus.errors` type a caller catches,
    its message starting with what was being done."""
    if isinstance(exc, nats.js.errors.NotFoundError):
        return NotFound(f"{doing}: not found")
    if isinstance(exc, nats.errors.NoRespondersError):
        return NoResponders(f"{doing}: nobody answers")
    if isinstance(exc, TimeoutError):  # nats-py's timeouts are TimeoutErrors too
        return BusTimeout(f"{doing}: no answer")
    if isinstance(exc, nats.js.errors.APIError) and exc.description:
        return BusError(f"{doing}: {exc.description}")
    return BusError(f"{doing}: {exc}")


def received(msg: Msg) -> Message:
    """A core message (a request, an event seen by a subscription) as a :class:`Message`."""
    return Message(subject=msg.subject, data=msg.data, headers=msg.headers, reply=msg.reply)


class Subscription:
    """A subscription made through :meth:`Bus.subscribe` or :meth:`Bus.serve`."""

    def __init__(self, sub: NatsSubscription) -> None:
        self._sub = sub

    async def unsubscribe(self) -> None:
        """End it; raises :class:`BusError` if the server cannot be told (disconnected)."""
        try:
            await self._sub.unsubscribe()
        except nats.errors.Error as exc:
            raise translate(exc, f"cannot unsubscribe from {self._sub.subject}") from None


@dataclass(frozen=True, slots=True)
class StreamState:
    """What a stream holds: its first and last sequences, its size, and (when asked for)
    the number of messages on each subject."""

    first: int
    last: int
    bytes: int
    messages: int
    subjects: dict[str, int]


@dataclass
class Bus:
    """A connected client with the JetStream context and the subject names."""

    nc: Client
    js: JetStreamContext
    subjects: Subjects
    settings: BusSettings
    violations: list[tuple[float, str]] = field(default_factory=list)
    _guards: dict[str, list[anyio.CancelScope]] = field(default_factory=dict)

    # -- appends -----------------------------------------------------------------------
    async def append(self, subject: str, data: bytes, msg_id: str, timeout: float = 5.0) -> int:
        """Publish to JetStream and wait for the PubAck; return the stream sequence.

        ``msg_id`` becomes ``Nats-Msg-Id``: appending the same id again within the stream's
        duplicate window returns the first sequence and stores nothing.  A refusal by the
        server raises :class:`PermissionDenied` as soon as the server says so.
        """
        started = time.monotonic()
        with self._guard(subject) as scope:
            try:
                ack = await self.js.publish(
                    subject, data, timeout=timeout, headers={"Nats-Msg-Id": msg_id}
                )
            except (nats.errors.TimeoutError, TimeoutError):
                self.raise_if_denied(subject, started)
                raise BusError(f"no acknowledgement for {subject} within {timeout:g}s") from None
            except nats.errors.NoRespondersError:
                raise BusError(
                    f"no stream stores {subject}: is the manager running (it creates the streams)?"
                ) from None
            except nats.js.errors.APIError as exc:
                raise BusError(f"append to {subject} refused: {exc.description}") from None
            except nats.errors.Error as exc:
                raise BusError(f"append to {subject} failed: {exc}") from None
            return int(ack.seq)
        assert scope.cancelled_caught
        raise self._denied(subject)

    async def subscribe(
        self,
        subject: str,
        cb: Callable[[Message], Awaitable[None]],
        *,
        queue: str = "",
        pending_msgs_limit: int | None = None,
        pending_bytes_limit: int | None = None,
    ) -> Subscription:
        """Subscribe ``cb`` to ``subject`` (in queue group ``queue`` if given).

        The server gets the subscription before any later publish of this connection, but
        another connection's publish may come first: a service uses :meth:`serve`."""

        async def on_msg(msg: Msg) -> None:
            await cb(received(msg))

        limits: dict[str, int] = {}
        if pending_msgs_limit is not None:
            limits["pending_msgs_limit"] = pending_msgs_limit
        if pending_bytes_limit is not None:
            limits["pending_bytes_limit"] = pending_bytes_limit
        try:
            return Subscription(
                await self.nc.subscribe(subject, queue=queue, cb=on_msg, **limits)  # type: ignore[arg-type]
            )
        except nats.errors.Error as exc:
            raise translate(exc, f"cannot subscribe to {subject}") from None

    async def serve(
        self, subject: str, cb: Callable[[Message], Awaitable[None]], *, queue: str = ""
    ) -> Subscription:
        """Subscribe ``cb`` to ``subject`` (in queue group ``queue`` if given) and wait until
        the server has the subscription (one PING/PONG round trip), so that a service that
        then says it is ready can be reached: right after a bare ``subscribe`` the SUB may
        still sit in this client's buffer, and a request from another connection finds no
        responders (seen once in the test suite)."""
        sub = await self.subscribe(subject, cb, queue=queue)
        try:
            await self.nc.flush()
        except (nats.errors.Error, TimeoutError) as exc:
            raise translate(exc, f"cannot subscribe to {subject}") from None
        return sub

    async def publish(self, subject: str, data: bytes) -> None:
        """A core publish (no acknowledgement: a lost message is no harm to the caller)."""
        try:
            await self.nc.publish(subject, data)
        except (nats.errors.Error, OSError) as exc:
            raise translate(exc, f"cannot publish on {subject}") from None

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closed for good (a service's watchdog then stops)."""
        return bool(self.nc.is_closed)

    async def request(self, subject: str, data: bytes, timeout: float = 5.0) -> bytes:
        started = time.monotonic()
        with self._guard(subject) as scope:
            try:
                msg = await self.nc.request(subject, data, timeout=timeout)
            except nats.errors.NoRespondersError:
                raise NoResponders(
                    f"nobody answers on {subject}: is the manager running?"
                ) from None
            except (nats.errors.TimeoutError, TimeoutError):
                self.raise_if_denied(subject, started)
                raise BusTimeout(f"no answer on {subject} within {timeout:g}s") from None
            except nats.errors.Error as exc:
                raise BusError(f"request on {subject} failed: {exc}") from None
            return bytes(msg.data)
        assert scope.cancelled_caught
        raise self._denied(subject)

    async def request_hedged(
        self,
        subject: str,
        data: bytes,
        *,
        hedge_subject: str | None = None,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
        usable: Callable[[bytes], bool] | None = None,
        first_wait: float = HEDGE_FIRST_WAIT,
    ) -> bytes:
        """A request to a queue group of replicas, sent again while no usable answer comes.

        In a queue group the server hands each request to one member, at random.  A member
        that is connected but hung (SIGSTOP, swapped out, a long stall) keeps its
        subscription until the server gives up on its connection (missed pings: minutes),
        and the requests it is handed are swallowed: a plain request would wait its whole
        timeout on a third of the calls with one hung replica out of three, and asking the
        queue group again only draws lots again.  So when no answer came within
        ``first_wait`` seconds the request is sent again (hedged) to ``hedge_subject``, which
        every replica answers (no queue group), then again after twice that, and so on (at
        most :data:`HEDGE_MAX_WAIT` apart), every copy left open on one inbox.  The first
        usable answer wins, whoever sends it: a replica that is merely slow still counts,
        and a hung one costs one ``first_wait``.  The fan-out costs the replicas one answer
        each, only for the calls whose first request found no answer in time.  An answer
        ``usable`` refuses (a replica behind the position asked for) is passed over: the
        next copy, when due, asks every replica.  A "no responders" status (nobody
        subscribed at all) ends it at once.  Without ``hedge_subject`` the copies go to
        ``subject`` again.
        """
        started = time.monotonic()
        deadline = started + timeout
        inbox = self.nc.new_inbox()
        send, receive = anyio.create_memory_object_stream[Msg](64)

        async def on_reply(msg: Msg) -> None:
            with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
                send.send_nowait(msg)

        refused = 0
        parts: dict[str, dict[int, bytes]] = {}
        with self._guard(subject) as scope:
            try:
                sub = await self.nc.subscribe(inbox, cb=on_reply)
            except nats.errors.Error as exc:
                raise BusError(f"request on {subject} failed: {exc}") from None
            try:
                wait = first_wait
                target = subject
                next_send = started
                while (now := time.monotonic()) < deadline:
                    if now >= next_send:
                        try:
                            await self.nc.publish(target, data, reply=inbox, headers=headers)
                        except nats.errors.Error as exc:
                            raise BusError(f"request on {subject} failed: {exc}") from None
                        target = hedge_subject or subject
                        next_send = now + wait
                        wait = min(wait * 2, HEDGE_MAX_WAIT)
                    answer: bytes | None = None
                    with anyio.move_on_after(min(next_send, deadline) - now):
                        answer = await next_answer(receive, parts, subject)
                    if answer is None:
                        continue
                    if usable is None or usable(answer):
                        return answer
                    refused += 1  # (a replica behind: the next copy, when due, asks them all)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
                send.close()
                receive.close()
            self.raise_if_denied(subject, started)
            behind = f" ({refused} answers not usable)" if refused else ""
            raise BusError(f"no answer on {subject} within {timeout:g}s{behind}")
        assert scope.cancelled_caught
        raise self._denied(subject)

    async def respond(self, msg: Message, data: bytes, *, parts: bool = True) -> bool:
        """Answer a request with ``data`` and never raise; False if it is too big even in
        parts (more than :data:`MAX_ANSWER_PARTS`), and nothing was sent.

        An answer bigger than the server's ``max_payload`` goes in parts (header
        :data:`PART_HEADER`), which :meth:`request_hedged` puts together; one message over
        the limit would make nats-py raise, and a service must not end on an honest big
        answer.  ``parts=False``: one message whatever its size, for a requester that does
        not put parts together (:meth:`request`); too big, it is not sent (logged).  Only an
        inbox is answered (see :func:`answerable`).
        """
        if not answerable(msg.reply):
            return True
        assert msg.reply is not None
        room = max(1024, int(self.nc.max_payload) - PART_ROOM)
        count = -(-len(data) // room)
        if parts and count > MAX_ANSWER_PARTS:
            return False
        try:
            if count <= 1 or not parts:
                await self.nc.publish(msg.reply, data)
                return True
            answer_id = secrets.token_hex(8)
            for index in range(count):
                await self.nc.publish(
                    msg.reply,
                    data[index * room : (index + 1) * room],
                    headers={PART_HEADER: f"{answer_id} {index} {count}"},
                )
        except (nats.errors.Error, OSError) as exc:
            log.warning("could not answer on %s: %s", msg.subject, exc)
        return True

    async def gather(self, subject: str, data: bytes, *, window: float) -> list[bytes]:
        """Send a request and take every answer that comes within ``window`` seconds (from
        everyone subscribed, not only the first): who else answers for a name."""
        answers: list[bytes] = []

        async def on_reply(msg: Message) -> None:
            answers.append(msg.data)

        inbox = self.nc.new_inbox()
        sub = await self.subscribe(inbox, on_reply)
        try:
            try:
                await self.nc.publish(subject, data, reply=inbox)
            except (nats.errors.Error, OSError) as exc:
                raise translate(exc, f"cannot ask on {subject}") from None
            await anyio.sleep(window)
        finally:
            with contextlib.suppress(BusError):
                await sub.unsubscribe()
        return answers

    # -- stored messages and stream state ------------------------------------------------
    async def get_message(
        self,
        stream: str,
        *,
        seq: int | None = None,
        last_on: str | None = None,
        direct: bool = True,
        timeout: float = 5.0,
    ) -> Stored:
        """One stored message: the one at ``seq``, or the last one on subject ``last_on``.

        ``direct``: a direct get, which any replica of the stream answers (and which the
        readers' permissions allow); else through the stream's leader.  Raises
        :class:`NotFound` (no such message), :class:`NoResponders` (no such stream),
        :class:`BusTimeout` (no answer; :class:`PermissionDenied` if the server refused it)
        or :class:`BusError`.
        """
        js = self.js if timeout == 5.0 else self.nc.jetstream(timeout=timeout)
        what = f"message {seq}" if last_on is None else f"the last message on {last_on}"
        started = time.monotonic()
        try:
            if last_on is not None:
                raw = await js.get_last_msg(stream, last_on, direct=direct)
            else:
                raw = await js.get_msg(stream, seq, direct=direct)
        except (nats.errors.TimeoutError, TimeoutError):
            self.raise_if_denied(last_on or stream, started)
            raise BusTimeout(f"no answer reading {what} from {stream}") from None
        except nats.errors.NoRespondersError:
            raise NoResponders(f"stream {stream} does not exist (no responders)") from None
        except nats.errors.Error as exc:
            raise translate(exc, f"cannot read {what} from {stream}") from None
        return Stored(
            seq=int(raw.seq or 0),
            subject=raw.subject or "",
            data=raw.data or b"",
            replayed=replayed(raw.headers, direct=direct),
            time=raw.time
            or (stored_time(raw.headers.get("Nats-Time-Stamp", "")) if raw.headers else EPOCH),
        )

    async def stream_state(self, stream: str, *, subjects: str | None = None) -> StreamState:
        """What ``stream`` holds now; with ``subjects`` (a filter), the count of messages on
        each of its subjects too.  Raises :class:`NotFound` if there is no such stream."""
        try:
            if subjects is None:
                info = await self.js.stream_info(stream)
            else:
                info = await self.js.stream_info(stream, subjects_filter=subjects)
        except (nats.errors.Error, TimeoutError) as exc:
            raise translate(exc, f"cannot read stream {stream}") from None
        state = info.state
        return StreamState(
            first=int(state.first_seq or 0),
            last=int(state.last_seq or 0),
            bytes=int(state.bytes or 0),
            messages=int(state.messages or 0),
            subjects=dict(state.subjects or {}),
        )

    @contextlib.contextmanager
    def _guard(self, subject: str) -> Iterator[anyio.CancelScope]:
        """A cancel scope that a "permissions violation" naming ``subject`` cancels, so that
        a refused publish fails at once instead of after its timeout."""
        scope = anyio.CancelScope()
        key = subject.lower()
        self._guards.setdefault(key, []).append(scope)
        try:
            with scope:
                yield scope
        finally:
            waiting = self._guards.get(key, [])
            if scope in waiting:
                waiting.remove(scope)
            if not waiting:
                self._guards.pop(key, None)

    def on_violation(self, text: str) -> None:
        """Called by the connection's error callback for every permissions violation."""
        lowered = text.lower()
        for key, scopes in list(self._guards.items()):
            if key in lowered:
                for scope in scopes:
                    scope.cancel()

    def _denied(self, subject: str) -> PermissionDenied:
        return PermissionDenied(
            f"permission denied: the server refused {subject} to {self.settings.cert.name} "
            "(its certificate's role may not do this)"
        )

    def raise_if_denied(self, subject: str, since: float) -> None:
        """Raise PermissionDenied if the server refused something since ``since``
        (``time.monotonic()``); call it when a request to ``subject`` timed out."""
        for at, text in self.violations:
            # nats-py lower-cases the server's error text
            if at >= since - 0.5 and subject.lower() in text.lower():
                raise self._denied(subject)
        if any(at >= since - 0.5 for at, _ in self.violations):
            raise PermissionDenied(
                f"permission denied while sending to {subject}: {self.violations[-1][1]}"
            )

    # -- streams -------------------------------------------------------------------------
    async def ensure_streams_when_ready(
        self, limits: StreamSettings | None = None, timeout: float = 30.0
    ) -> None:
        """:meth:`ensure_streams` once JetStream answers.

        A new cluster first elects its meta leader; until then a JetStream request gets "503
        temporarily unavailable" or no answer at all, so JetStream is asked with a short
        timeout first (a stream request would wait out its full timeout instead).
        """
        deadline = time.monotonic() + timeout
        probe = self.nc.jetstream(timeout=0.5)
        while True:
            try:
                await probe.account_info()
                await self.ensure_streams(limits)
                return
            except (BusError, nats.errors.Error) as exc:
                if time.monotonic() > deadline:
                    raise BusError(f"no streams after {timeout:g}s: {exc}") from None
                log.debug("JetStream not ready (%s); asking again", exc)
                await anyio.sleep(0.2)

    async def ensure_streams(self, limits: StreamSettings | None = None) -> None:
        """Create the streams if missing, or update their limits; safe to call any time.

        Called by the manager at start (only the manager's certificate may create or update
        our streams).  Every stream denies deleting a message and purging: nats-server then
        refuses both to everyone, and refuses ever to lift the flags again, so history ends
        only by the limits configured here (``max_age``).  Streams made by an older version
        get the flags at the manager's next start.  Events and commands are bounded by
        :data:`~mirrorbus.events.codec.MAX_MESSAGE_BYTES`.
        """
        limits = limits or StreamSettings()
        s = self.subjects
        configs = [
            StreamConfig(
                name=s.evt_stream,
                subjects=[s.all_events],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=limits.replicas,
                max_age=limits.max_age or None,
                duplicate_window=limits.duplicate_window,
                allow_direct=True,
                max_msg_size=MAX_MESSAGE_BYTES,
                deny_delete=True,
                deny_purge=True,
            ),
            StreamConfig(
                name=s.cmd_stream,
                subjects=[s.all_commands],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=limits.replicas,
                max_age=limits.command_max_age,
                duplicate_window=limits.duplicate_window,
                max_msg_size=MAX_MESSAGE_BYTES,
                deny_delete=True,
                deny_purge=True,
            ),
            StreamConfig(
                name=s.snap_stream,
                subjects=[s.all_snapshots],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=limits.replicas,
                max_msgs_per_subject=1,
                discard=DiscardPolicy.OLD,
                allow_direct=True,
                duplicate_window=limits.duplicate_window,
                deny_delete=True,
                deny_purge=True,
            ),
        ]
        for config in configs:
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await self.js.update_stream(config)
            except nats.js.errors.APIError as exc:
                if exc.err_code == 10058:  # stream name in use with a different config
                    await self.js.update_stream(config)
                else:
                    raise BusError(f"cannot create stream {config.name}: {exc}") from None
            except (nats.errors.TimeoutError, TimeoutError):
                raise BusError(f"cannot create stream {config.name}: no answer") from None

    async def last_sequence(self) -> int:
        """Last sequence of the event stream (0 when empty)."""
        try:
            info = await self.js.stream_info(self.subjects.evt_stream)
        except nats.js.errors.NotFoundError:
            return 0
        except nats.errors.Error as exc:
            raise BusError(f"cannot read stream {self.subjects.evt_stream}: {exc}") from None
        return int(info.state.last_seq)

    async def stream_usage(self, timeout: float = 1.0) -> dict[str, tuple[int, int]]:
        """Bytes and messages stored in each of the site's streams, by stream name: what the
        disk holds (the metrics ``mirrorbus_stream_bytes``/``_messages``).  A stream this
        certificate may not look at, or that does not answer within ``timeout``, is left
        out (a reader's ``mirrorbus project`` may see the event stream only)."""
        usage: dict[str, tuple[int, int]] = {}
        s = self.subjects
        for name in (s.evt_stream, s.cmd_stream, s.snap_stream):
            with anyio.move_on_after(timeout):
                try:
                    info = await self.js.stream_info(name)
                except (nats.errors.Error, TimeoutError):
                    continue
                usage[name] = (int(info.state.bytes), int(info.state.messages))
        return usage

    async def close(self) -> None:
        """Close the connection.

        Not ``drain``: every append has been acknowledged already, and draining waits for
        subscriptions to empty, which a pull subscription whose fetch was cancelled never does.
        """
        if self.nc.is_closed:
            return
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=2)
        # nats-py can fail while closing a connection whose server is gone; closing must
        # not turn a clean shutdown into a crash.
        with contextlib.suppress(Exception):
            await self.nc.close()


PING_INTERVAL = 5.0
"""Seconds between the client's PINGs.  A node cut off by a silent partition (no RST, no
ICMP) leaves the TCP connection open for many minutes; only an unanswered PING tells.  With
nats-py's default (2 minutes, 2 outstanding) a worker or the manager stayed on such a node
for over 4 minutes, its appends and queries lost meanwhile."""
MAX_OUTSTANDING_PINGS = 3
"""PINGs without a PONG before the connection counts as dead and the client moves to another
node: about ``PING_INTERVAL * (MAX_OUTSTANDING_PINGS + 1)`` = 20 s."""


CLOSE_WAIT = 2.0
"""Seconds a connection being given up may take to close before it is aborted."""


class _Transport(TcpTransport):
    """nats-py's TCP/TLS transport, except that waiting for a close is bounded.

    Before nats-py reconnects it waits until the old connection has closed.  A TLS connection
    to a node that was cut off silently still holds unsent data, so that close waits until
    TCP itself gives up, about 15 minutes (nats-io/nats.py#671), and the client stays
    disconnected all along although two other nodes are up.  After :data:`CLOSE_WAIT`
    seconds the connection is aborted instead.
    """

    async def wait_closed(self) -> None:
        writer = self._io_writer
        if writer is None:
            return
        closing = asyncio.ensure_future(writer.wait_closed())
        closing.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            await asyncio.wait_for(asyncio.shield(closing), CLOSE_WAIT)
        except TimeoutError:
            log.info("connection not closed within %gs; aborting it", CLOSE_WAIT)
            writer.transport.abort()


# nats-py makes a new transport for every connection it opens, by this module-level name.
nats.aio.client.TcpTransport = _Transport  # type: ignore[attr-defined]


SEQUENCE_HEADERS = "Mirrorbus-Sequence-Headers"
"""Set by our client on a received message (never sent): how many ``Nats-Sequence`` headers
its header block held.  nats-py keeps only the last of a repeated header, and only the
count tells a server's answer stored back into a stream (see :func:`replayed`)."""

REPLAYED = (
    "a copy of an older message, stored by the server as its answer to someone's request; "
    "not appended by a worker"
)
"""The dead letter's reason for a :func:`replayed` message."""


class _Client(Client):
    """nats-py's client, except that each message says how many ``Nats-Sequence`` headers it
    carried (in :data:`SEQUENCE_HEADERS`)."""

    async def _process_headers(self, headers: bytes) -> dict[str, str] | None:
        parsed: dict[str, str] | None = await super()._process_headers(headers)
        count = headers.count(b"\r\nNats-Sequence:") if headers else 0
        if count:
            parsed = dict(parsed or {})
            parsed[SEQUENCE_HEADERS] = str(count)
        return parsed


def replayed(headers: Mapping[str, str] | None, *, direct: bool) -> bool:
    """Whether a message read from a stream is a copy the server stored there as an answer.

    Every client may name any reply subject, and the server itself publishes its answers
    there, whatever the requester's permissions: a reader asking for an old event by direct
    get with a reply subject of ``<prefix>.evt.<worker>.<job>`` makes the server append a
    copy of it to the log (the stream's duplicate window catches it only within two
    minutes).  Such a copy carries the headers the server adds to a direct get's answer,
    ``Nats-Sequence`` among them, which no append of ours has.  A consumer's delivery shows
    the stored headers as they are; a direct get adds its own ``Nats-Sequence`` after them,
    so there the copy has two (``direct``).
    """
    if not headers:
        return False
    count = headers.get(SEQUENCE_HEADERS)
    if count is None:  # parsed elsewhere (a stream message get): the stored headers only
        return "Nats-Sequence" in headers
    return int(count) > (1 if direct else 0)


async def connect(
    settings: BusSettings, *, connect_timeout: float = 5.0, reconnect: bool = True
) -> Bus:
    """Connect with mutual TLS; raise :class:`BusError` with the reason if refused."""
    if any(url.startswith(("ws://", "wss://")) for url in settings.servers):
        restore_websocket_transport()
    violations: list[tuple[float, str]] = []
    errors: list[str] = []
    made: list[Bus] = []

    async def on_error(exc: Exception) -> None:
        text = str(exc) or type(exc).__name__  # (a timeout says nothing of itself)
        if "ermissions" in text:
            violations.append((time.monotonic(), text))
            del violations[:-50]
            log.warning("NATS refused: %s", text)
            for bus in made:
                bus.on_violation(text)
        else:
            errors.append(text)
            log.debug("NATS error: %s", text)

    async def on_disconnected() -> None:
        if not nc.is_closed:  # not our own close
            log.info("disconnected from NATS; reconnecting")

    async def on_reconnected() -> None:
        log.info("reconnected to NATS at %s", nc.connected_url.netloc if nc.connected_url else "?")

    options: dict[str, Any] = {
        "servers": list(settings.servers),
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
        "tls": tls_context(settings),
        "name": settings.name,
        "error_cb": on_error,
        "connect_timeout": connect_timeout,
        "allow_reconnect": reconnect,
        # Without reconnects, one more try per server and then the error: nats-py only gives
        # a server up when this is above 0 (0 retried a refusing server every second forever,
        # and `ctl` hung on a server that was down).
        "max_reconnect_attempts": -1 if reconnect else 1,
        "reconnect_time_wait": 1,
        "ping_interval": PING_INTERVAL,
        "max_outstanding_pings": MAX_OUTSTANDING_PINGS,
    }
    if not settings.inbox_prefix:
        # Each role may subscribe only to its own inbox prefix: take it from the certificate.
        role = certificate_role(settings.cert)
        if role is not None:
            settings = replace(settings, inbox_prefix=Subjects.role_inbox(role))
    if settings.inbox_prefix:
        options["inbox_prefix"] = settings.inbox_prefix
    nc = _Client()
    try:
        if reconnect:  # a service waits for its servers
            await nc.connect(**options)
        else:
            # A client that does not reconnect (the ctl) tries the servers one after another
            # in a random order: nats-py alone gives up at the first whose handshake fails
            # (a node that takes the connection and says nothing, a lossy link), though the
            # next may answer at once.  Each try is bounded whatever nats-py does: its two
            # attempts and the wait between them.
            servers = list(settings.servers)
            random.shuffle(servers)
            for n, server in enumerate(servers, 1):
                try:
                    with anyio.fail_after((connect_timeout + 2.0) * 2 + 1.0):
                        await nc.connect(**{**options, "servers": [server]})
                    break
                except Exception as exc:
                    if n == len(servers):
                        raise
                    with contextlib.suppress(Exception):
                        await nc.close()
                    log.debug("cannot connect to %s (%s); trying the next server", server, exc)
                    nc = _Client()  # (a closed client cannot connect again)
    except Exception as exc:  # nats-py raises a wide mix here (OSError, ssl, its own)
        with contextlib.suppress(Exception):
            await nc.close()  # else nats-py leaks the socket of a refused connection
        detail = errors[-1] if errors else str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError) and not str(exc):
            detail = f"no answer within {connect_timeout:g}s ({detail})"
        raise BusError(
            f"cannot connect to {', '.join(settings.servers)} as {settings.cert.name}: {detail}"
        ) from None
    bus = Bus(
        nc=nc,
        js=nc.jetstream(timeout=5),
        subjects=Subjects(settings.prefix),
        settings=settings,
        violations=violations,
    )
    made.append(bus)
    return bus
