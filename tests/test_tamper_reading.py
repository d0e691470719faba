"""The projection cannot lose an event, and nobody but the manager touches consumers.

Each attack is tried against a real nats-server with a running manager (in this process, on a
SQLite view), with the certificate the attacker would hold.  Afterwards the live view must
equal a rebuild of the log (what the honest events say), and the attack must have been
refused by the server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import nats.errors
import nats.js.errors
import pytest
from conftest import RunningServer, connect
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, ConsumerInfo, StreamConfig
from test_permissions import DENIED, _assert_denied

from mirrorbus.bus import Bus, settings_from_paths
from mirrorbus.bus import connect as bus_connect
from mirrorbus.events import JobConfigured, JobDisabled, WorkerStarted, encode
from mirrorbus.events.subjects import Subjects
from mirrorbus.manager import Manager, catch_up
from projections import tables
from projections.batch import DEAD_LETTER_EXCERPT
from projections.status_view import StatusView

pytestmark = pytest.mark.anyio
S = Subjects()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _bus(server: RunningServer, stem: str, inbox: str | None = None) -> Bus:
    settings = settings_from_paths([server.url], server.pki_dir, stem, inbox_prefix=inbox)
    return await bus_connect(settings, reconnect=False)


@contextlib.asynccontextmanager
async def _manager(server: RunningServer, path: Path) -> AsyncIterator[Manager]:
    """The real manager (streams, projector, queries, liveness, command consumers)."""
    view = StatusView(f"sqlite:///{path}")
    bus = await _bus(server, "manager")
    try:
        async with anyio.create_task_group() as tg:
            manager = Manager(bus, view)
            await tg.start(manager.run)
            yield manager
            tg.cancel_scope.cancel()
    finally:
        await bus.close()
        view.close()


Appended = list[tuple[str, bytes]]


async def _append(nc: Client, events: Appended) -> int:
    seq = 0
    for subject, data in events:
        seq = int((await nc.jetstream().publish(subject, data)).seq)
    return seq


def _honest(worker: str, n: int) -> Appended:
    """A worker's start and ``n`` configured-then-disabled jobs: (subject, event) pairs."""
    events = [
        (
            S.worker_events(worker),
            encode(WorkerStarted(id=f"{worker}-s", at=T0, worker=worker, jobs=())),
        )
    ]
    for i in range(n):
        job = f"j{i}"
        configured = JobConfigured(id=f"{worker}-c{i}", at=T0, worker=worker, job=job, upstream="u")
        disabled = JobDisabled(id=f"{worker}-d{i}", at=T0, worker=worker, job=job)
        events.append((S.job_events(worker, job), encode(configured)))
        events.append((S.job_events(worker, job), encode(disabled)))
    return events


async def _wait_position(view: StatusView, seq: int) -> None:
    with anyio.fail_after(20):
        while view.position() < seq:  # noqa: ASYNC110 - the view is another thread's database
            await anyio.sleep(0.05)


def _rows(view: StatusView) -> dict[str, list[tuple[object, ...]]]:
    dump = view.dump()
    return {k: v for k, v in dump.items() if k != tables.heartbeats.name}


async def _rebuild_equals(server: RunningServer, live: StatusView, path: Path) -> None:
    rebuilt = StatusView(f"sqlite:///{path}")
    bus = await _bus(server, "manager")
    try:
        await catch_up(bus, rebuilt)
        assert _rows(rebuilt) == _rows(live)
    finally:
        await bus.close()
        rebuilt.close()


async def test_reader_cannot_take_delete_or_inspect_consumers_and_the_view_misses_nothing(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    errors: list[Exception] = []
    async with _manager(nats_server, tmp_path / "view.db") as manager:
        reader = await connect(nats_server, "reader", errors=errors)
        w1 = await connect(nats_server, "worker", "w1")
        try:
            js = reader.jetstream(timeout=DENIED)
            # The consumers a reader would go for: the old manager's, a worker's command
            # consumer, one of its own (to deliver anywhere), by any API.
            attempts = [
                (f"$JS.API.CONSUMER.MSG.NEXT.{S.evt_stream}.manager", b'{"batch":100}'),
                (f"$JS.API.CONSUMER.MSG.NEXT.{S.cmd_stream}.w1", b'{"batch":100}'),
                (f"$JS.API.CONSUMER.DELETE.{S.cmd_stream}.w1", b""),
                (f"$JS.API.CONSUMER.INFO.{S.cmd_stream}.w1", b""),
                (f"$JS.API.CONSUMER.LIST.{S.evt_stream}", b""),
            ]
            last = await _append(w1, _honest("w1", 3))
            for subject, payload in attempts:
                with pytest.raises(nats.errors.TimeoutError):
                    await reader.request(subject, payload, timeout=DENIED)
                _assert_denied(errors, subject)
            with pytest.raises(nats.errors.TimeoutError):
                await js.add_consumer(
                    S.evt_stream,
                    ConsumerConfig(name="steal", deliver_subject=S.heartbeat("w1")),
                )
            _assert_denied(errors, f"$JS.API.CONSUMER.CREATE.{S.evt_stream}.steal")
            # The honest events all reach the view.
            await _wait_position(manager.view, last)
            assert len(manager.view.jobs("w1")) == 3
            assert all(j.status == "disabled" for j in manager.view.jobs("w1"))
            # The worker's command consumer (made by the manager) is there, untouched.
            info = await _command_consumer(nats_server, "w1")
            assert info.config.filter_subject == S.worker_commands("w1")
        finally:
            await w1.close()
            await reader.close()
        await _rebuild_equals(nats_server, manager.view, tmp_path / "rebuilt.db")


async def _command_consumer(server: RunningServer, worker: str) -> ConsumerInfo:
    """The worker's command consumer once the manager made it (it does so on its events)."""
    nc = await connect(server, "manager")
    try:
        with anyio.fail_after(10):
            while True:
                try:
                    return await nc.jetstream().consumer_info(
                        S.cmd_stream, S.worker_consumer(worker)
                    )
                except nats.js.errors.NotFoundError:
                    await anyio.sleep(0.05)
    finally:
        await nc.close()


async def _consumers(server: RunningServer) -> int:
    nc = await connect(server, "manager")
    try:
        return int((await nc.jetstream().account_info()).consumers)
    finally:
        await nc.close()


async def test_a_worker_named_manager_collides_with_nothing(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    nats_server.add_worker("manager")
    async with _manager(nats_server, tmp_path / "view.db") as manager:
        named = await connect(nats_server, "worker", "manager")
        w1 = await connect(nats_server, "worker", "w1")
        try:
            await _append(named, _honest("manager", 2))
            last = await _append(w1, _honest("w1", 2))
            await _wait_position(manager.view, last)
            assert [j.name for j in manager.view.jobs("manager")] == ["j0", "j1"]
            assert [j.name for j in manager.view.jobs("w1")] == ["j0", "j1"]
            info = await _command_consumer(nats_server, "manager")
            assert info.config.filter_subject == S.worker_commands("manager")
            await _command_consumer(nats_server, "w1")
            assert await _consumers(nats_server) == 3  # one per worker, and the replica's own
        finally:
            await w1.close()
            await named.close()


async def test_malformed_floods_are_bounded_and_lose_no_honest_event(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """A worker floods the log with malformed events as big as the stream allows, between
    other workers' honest events: every honest event reaches the view, each malformed one is a
    dead letter of bounded size, and a rebuild finishes with the same view."""
    async with _manager(nats_server, tmp_path / "view.db") as manager:
        w1 = await connect(nats_server, "worker", "w1")
        w2 = await connect(nats_server, "worker", "w2")
        try:
            garbage = b"{" + b"x" * 60_000
            honest = _honest("w2", 6)
            await _append(w2, honest[:1])
            for configured in honest[1::2]:  # each job configured after 25 malformed events
                for _ in range(25):
                    await w1.jetstream().publish(S.job_events("w1", "junk"), garbage)
                await _append(w2, [configured])
            last = await _append(w2, honest[2::2])
            await _wait_position(manager.view, last)
            assert [j.status for j in manager.view.jobs("w2")] == ["disabled"] * 6
            dead = manager.view.dump()[tables.dead_letters.name]
            assert len(dead) == 150
            assert all(len(row[3]) <= DEAD_LETTER_EXCERPT for row in dead)
        finally:
            await w2.close()
            await w1.close()
        await _rebuild_equals(nats_server, manager.view, tmp_path / "rebuilt.db")


async def test_rebuild_finishes_on_a_log_of_oversized_events_from_an_older_version(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """A log written before the size bound: 1 MB malformed events between honest ones."""
    manager_nc = await connect(nats_server, "manager")
    w1 = await connect(nats_server, "worker", "w1")
    w2 = await connect(nats_server, "worker", "w2")
    try:
        await manager_nc.jetstream().add_stream(
            StreamConfig(name=S.evt_stream, subjects=[S.all_events], allow_direct=True)
        )
        huge = b"[" * 1_000_000
        for _ in range(20):
            await w1.jetstream().publish(S.job_events("w1", "junk"), huge)
            await _append(w2, _honest("w2", 1)[:1])
        last = await _append(w2, _honest("w2", 3)[1:])
    finally:
        await w2.close()
        await w1.close()
        await manager_nc.close()
    assert last > 40
    view = StatusView(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    bus = await _bus(nats_server, "manager")
    try:
        assert await catch_up(bus, view) == last
        assert [j.status for j in view.jobs("w2")] == ["disabled"] * 3
        assert len(view.dead_letters(1000)) == 20
    finally:
        await bus.close()
        view.close()


async def test_heartbeats_cannot_be_faked_through_replies(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """A reader makes the server (JetStream) or the manager publish on w1's heartbeat subject
    by choosing it as a request's reply subject: w1 must not be shown alive."""
    async with _manager(nats_server, tmp_path / "view.db") as manager:
        w1 = await connect(nats_server, "worker", "w1")
        w2 = await connect(nats_server, "worker", "w2")
        reader = await connect(nats_server, "reader")
        try:
            await _append(w1, _honest("w1", 1))
            last = await _append(w2, _honest("w2", 1))
            await _wait_position(manager.view, last)
            spy = await connect(nats_server, "manager")
            seen: list[bytes] = []
            await spy.subscribe(S.heartbeat("w1"), cb=_collect(seen))
            await spy.flush()
            for _ in range(3):
                await reader.publish(
                    f"$JS.API.STREAM.INFO.{S.evt_stream}", b"", reply=S.heartbeat("w1")
                )
                await reader.publish(
                    f"$JS.API.DIRECT.GET.{S.evt_stream}",
                    json.dumps({"seq": 1}).encode(),
                    reply=S.heartbeat("w1"),
                )
                await reader.publish(S.api("ping"), b"{}", reply=S.heartbeat("w1"))
            await reader.flush()
            with anyio.fail_after(10):
                while len(seen) < 6:  # noqa: ASYNC110 - filled by the subscription's callback
                    await anyio.sleep(0.02)
            await spy.close()
            assert not any(data.startswith(b'{"ok"') for data in seen)  # the manager refused
            # An honest beat of w2 afterwards: once it is recorded, the fakes had their chance.
            await w2.publish(S.heartbeat("w2"), json.dumps({"worker": "w2", "running": 0}).encode())
            with anyio.fail_after(15):
                while not any(w.last_heartbeat for w in manager.view.workers() if w.name == "w2"):  # noqa: ASYNC110 - another thread writes the view
                    await anyio.sleep(0.05)
            beats = {w.name: w.last_heartbeat for w in manager.view.workers()}
            assert beats["w1"] is None
        finally:
            await reader.close()
            await w2.close()
            await w1.close()


def _collect(into: list[bytes]):  # type: ignore[no-untyped-def]
    async def on_msg(msg: Msg) -> None:
        into.append(bytes(msg.data))

    return on_msg


async def test_no_client_reads_another_roles_replies(nats_server: RunningServer) -> None:
    errors: list[Exception] = []
    for role in ("reader", "admin"):
        nc = await connect(nats_server, role, errors=errors)
        try:
            for inbox in ("_INBOX.>", "_INBOX_-admin.>", "_INBOX_-manager.>", "_INBOX_w1.>"):
                if inbox == f"{S.role_inbox(role)}.>":
                    continue
                await nc.subscribe(inbox)
                await nc.flush()
                with pytest.raises(nats.errors.TimeoutError):
                    await nc.request("nowhere", b"", timeout=0.2)  # lets the -ERR arrive
                _assert_denied(errors, f'subscription to "{inbox}"')
        finally:
            await nc.close()


async def test_deliveries_taken_from_the_managers_consumer_are_read_again(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """Someone pulls from a replica's consumer while events arrive (only a manager's
    certificate may: here one of the site's managers gone wrong): what it takes is delivered
    again or read again, and the view equals a rebuild of the log."""
    async with _manager(nats_server, tmp_path / "view.db") as manager:
        thief = await connect(nats_server, "manager")
        w1 = await connect(nats_server, "worker", "w1")
        stolen: list[int] = []
        consumer = S.manager_consumer(manager.name)
        try:
            inbox = thief.new_inbox()

            async def took(msg: Msg) -> None:
                if msg.reply and msg.reply.startswith("$JS.ACK"):
                    stolen.append(int(msg.reply.split(".")[-4]))

            await thief.subscribe(inbox, cb=took)
            events = _honest("w1", 40)
            for subject, data in events:
                await thief.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{S.evt_stream}.{consumer}",
                    b'{"batch":1,"no_wait":true}',
                    reply=inbox,
                )
                await w1.jetstream().publish(subject, data)
            await thief.flush()
            last = await _append(w1, [(S.worker_events("w1"), events[0][1])])
            await _wait_position(manager.view, last)
            assert stolen  # the attack took deliveries
            assert [j.status for j in manager.view.jobs("w1")] == ["disabled"] * 40
        finally:
            await w1.close()
            await thief.close()
        await _rebuild_equals(nats_server, manager.view, tmp_path / "rebuilt.db")


async def test_the_gateway_cannot_make_a_consumer_either(nats_server: RunningServer) -> None:
    """Not even its own command consumer (the manager beside it makes that): with one, it
    could have commands delivered onto a worker's heartbeat or snapshot subject."""
    errors: list[Exception] = []
    gateway = await connect(nats_server, "gateway", errors=errors)
    manager = await _bus(nats_server, "manager")
    try:
        await manager.ensure_streams()
        js = gateway.jetstream(timeout=DENIED)
        for deliver in (S.heartbeat("w1"), S.snapshot("w1"), None):
            with pytest.raises(nats.errors.TimeoutError):
                await js.add_consumer(
                    S.cmd_stream,
                    ConsumerConfig(
                        name=S.gateway_consumer,
                        durable_name=S.gateway_consumer,
                        filter_subject=S.all_commands,
                        deliver_subject=deliver,
                    ),
                )
            _assert_denied(errors, f"$JS.API.CONSUMER.CREATE.{S.cmd_stream}.{S.gateway_consumer}.")
        assert await _consumers(nats_server) == 0
    finally:
        await manager.close()
        await gateway.close()


async def test_a_consumer_that_stops_delivering_is_made_again(
    nats_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica's consumer gone behind its back (deleted here with a manager's certificate;
    in a cluster, a consumer whose replicas lost their leader in a partition answers nothing
    in the same way): once nothing was delivered for a while though the log is ahead of the
    view, the projector makes the consumer again from its position and the view misses
    nothing."""
    from mirrorbus.manager import projector

    monkeypatch.setattr(projector, "STALL_AFTER", 1.0)
    async with _manager(nats_server, tmp_path / "view.db") as manager:
        other = await connect(nats_server, "manager")
        w1 = await connect(nats_server, "worker", "w1")
        try:
            first = _honest("w1", 3)
            await _wait_position(manager.view, await _append(w1, first))
            rebinds = manager.projector.rebinds
            js = other.jetstream()
            await js.delete_consumer(S.evt_stream, S.manager_consumer(manager.name))
            last = await _append(w1, _honest("w1", 10)[1:])
            await _wait_position(manager.view, last)
            assert manager.projector.rebinds > rebinds
            assert [j.status for j in manager.view.jobs("w1")] == ["disabled"] * 10
        finally:
            await w1.close()
            await other.close()
        await _rebuild_equals(nats_server, manager.view, tmp_path / "rebuilt.db")
