"""The worker's and the manager's behaviour over the bus in memory (``mirrorbus.bus.memory``):
no server, milliseconds a test.

What a real nats-server must show (permissions, TLS, JetStream's own semantics, the drills)
stays in the tests that start one; here the same bus APIs run against an in-process stand-in,
so the services' logic above them is tested fast: appends and their sequences, the projector
through its consumer (holes, acknowledgements) and without one, a worker's restore, the
command consumer, requests and services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from test_status_view import a_day, job_events, subject_of

from mirrorbus.bus import Bus, Message, PullConsumer, ensure_command_consumer
from mirrorbus.bus.memory import MemoryServer, matches
from mirrorbus.clock import SystemClock, new_id
from mirrorbus.control import Control
from mirrorbus.errors import NoResponders, NotFound
from mirrorbus.events import (
    AttemptStarted,
    Command,
    JobEvent,
    RunStarted,
    RunSucceeded,
    encode,
    fold,
)
from mirrorbus.manager import projector as projector_module
from mirrorbus.manager.projector import Projector
from mirrorbus.manager.queries import QueryService
from mirrorbus.worker.commands import CommandHandler
from mirrorbus.worker.outbox import Outbox
from mirrorbus.worker.restore import restore
from projections.status_view import ApplyResult, StatusView

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def server() -> AsyncIterator[MemoryServer]:
    memory = MemoryServer()
    try:
        yield memory
    finally:
        await memory.close()


@pytest.fixture
def view(tmp_path: Path) -> Iterator[StatusView]:
    v = StatusView(f"sqlite:///{tmp_path / 'view.db'}")
    try:
        yield v
    finally:
        v.close()


async def _manager(server: MemoryServer) -> Bus:
    bus = server.connect(role="manager")
    await bus.ensure_streams()
    return bus


async def _append(bus: Bus, events: list) -> None:  # type: ignore[type-arg]
    for event in events:
        await bus.append(subject_of(event), encode(event), event.id)


class _Reached:
    """A projector's ``on_applied`` that says when the view holds event ``last``."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.event = anyio.Event()

    def __call__(self, result: ApplyResult) -> None:
        if result.position >= self.last:
            self.event.set()

    async def wait(self) -> None:
        with anyio.fail_after(5):
            await self.event.wait()


def test_subject_filters() -> None:
    assert matches("a.*.c", "a.b.c") and not matches("a.*.c", "a.b.c.d")
    assert matches("a.>", "a.b.c") and not matches("a.>", "a")
    assert matches("a.b", "a.b") and not matches("a.b", "a.c")


async def test_appends_get_sequences_and_one_id_is_stored_once(server: MemoryServer) -> None:
    bus = await _manager(server)
    s = bus.subjects
    assert await bus.append(s.operator_events("admin"), b"one", "id1") == 1
    assert await bus.append(s.operator_events("admin"), b"two", "id2") == 2
    assert await bus.append(s.operator_events("admin"), b"one again", "id1") == 1
    assert await bus.last_sequence() == 2
    stored = await bus.get_message(s.evt_stream, seq=2)
    assert (stored.seq, stored.data, stored.replayed) == (2, b"two", False)
    with pytest.raises(NotFound):
        await bus.get_message(s.evt_stream, seq=3)
    state = await bus.stream_state(s.evt_stream)
    assert (state.first, state.last, state.messages) == (1, 2, 2)


async def test_a_service_answers_and_nobody_is_no_responders(server: MemoryServer) -> None:
    bus = await _manager(server)
    client = server.connect(role="admin")

    async def echo(msg: Message) -> None:
        await bus.respond(msg, msg.data * 3000)  # bigger than one message: sent in parts

    sub = await bus.serve("svc.echo", echo)
    try:
        answer = await client.request_hedged("svc.echo", b"0123456789", timeout=2)
        assert answer == b"0123456789" * 3000
        with pytest.raises(NoResponders):
            await client.request("svc.nobody", b"", timeout=1)
    finally:
        await sub.unsubscribe()


async def test_the_projector_applies_the_log_through_its_consumer(
    server: MemoryServer, view: StatusView
) -> None:
    bus = await _manager(server)
    events = a_day()
    await _append(bus, events[:10])
    reached = _Reached(len(events))
    projector = Projector(
        bus, view, consumer=bus.subjects.manager_consumer("m1"), batch=4, on_applied=reached
    )
    async with anyio.create_task_group() as tg:
        await tg.start(projector.run)
        await _append(bus, events[10:])
        await reached.wait()
        tg.cancel_scope.cancel()
    assert {(j.worker, j.name): j for j in view.jobs(include_removed=True)} == {
        (j.worker, j.name): j for j in fold(job_events(events)).values()
    }
    assert projector.rebinds == 0


async def test_a_delivery_lost_on_the_way_is_read_again_not_skipped(
    server: MemoryServer, view: StatusView
) -> None:
    bus = await _manager(server)
    events = a_day()
    await _append(bus, events)
    consumer = bus.subjects.manager_consumer("m1")
    reached = _Reached(len(events))
    projector = Projector(bus, view, consumer=consumer, batch=64, on_applied=reached)
    async with anyio.create_task_group() as tg:
        # The consumer is made by run(); lose event 5 on its first delivery.
        original = projector._make
        made: list[bool] = []

        async def make_and_lose() -> None:
            await original()
            if not made:
                server.lose(bus.subjects.evt_stream, consumer, 5)
            made.append(True)

        projector._make = make_and_lose  # type: ignore[method-assign]
        await tg.start(projector.run)
        await reached.wait()
        tg.cancel_scope.cancel()
    assert projector.rebinds == 1  # made again from the view's position, not past the hole
    assert {(j.worker, j.name): j for j in view.jobs(include_removed=True)} == {
        (j.worker, j.name): j for j in fold(job_events(events)).values()
    }


async def test_a_reader_projects_without_a_consumer(server: MemoryServer, view: StatusView) -> None:
    bus = await _manager(server)
    events = a_day()
    await _append(bus, events[:5])
    reached = _Reached(len(events))
    projector = Projector(bus, view, batch=3, on_applied=reached)
    async with anyio.create_task_group() as tg:
        await tg.start(projector.run)
        await _append(bus, events[5:])  # woken by the appends, read by sequence
        await reached.wait()
        tg.cancel_scope.cancel()
    assert view.position() == len(events)


def _runs(worker: str, runs: int) -> list[JobEvent]:
    events: list[JobEvent] = []
    for r in range(runs):
        common = {"worker": worker, "job": f"job{r % 3}", "run_id": new_id()}
        at = T0 + timedelta(minutes=r)
        events += [
            RunStarted(id=new_id(), at=at, **common),
            AttemptStarted(id=new_id(), at=at, attempt=1, **common),
            RunSucceeded(id=new_id(), at=at, attempt=1, size=f"{r}K", **common),
        ]
    return events


async def test_a_worker_restores_from_its_snapshot_and_the_events_after_it(
    server: MemoryServer,
) -> None:
    await _manager(server)
    bus = server.connect(role="worker-w1")
    history = _runs("w1", 20)
    outbox = Outbox(bus, "w1", SystemClock(), acked_states={}, acked_seq=0, snapshot_every=10)
    async with anyio.create_task_group() as tg:
        tg.start_soon(outbox.run)
        for event in history:
            outbox.put(bus.subjects.job_events("w1", event.job), event)
        assert await outbox.flush(10)
        await outbox.snapshot()
        tg.cancel_scope.cancel()
    tail = _runs("w1", 2)
    await _append(bus, tail)
    restored = await restore(bus, "w1")
    assert restored.states == fold(history + tail)
    assert restored.folded == len(tail)  # the snapshot spares the rest
    assert restored.seq == await bus.last_sequence()


class _Worker:
    name = "w1"

    def __init__(self, bus: Bus) -> None:
        self.bus = bus


class _Recorder(CommandHandler):
    """The command consumer with what it hands over recorded instead of carried out."""

    def __init__(self, bus: Bus, expected: int) -> None:
        super().__init__(_Worker(bus))  # type: ignore[arg-type]
        self.got: list[str] = []
        self.expected = expected
        self.all_there = anyio.Event()

    async def handle(self, msg: Message) -> None:
        self.got.append(msg.subject)
        if len(self.got) >= self.expected:
            self.all_there.set()


async def test_the_command_consumer_waits_for_the_manager_and_takes_each_command_once(
    server: MemoryServer,
) -> None:
    manager = await _manager(server)
    bus = server.connect(role="worker-w1")
    handler = _Recorder(bus, 3)
    s = bus.subjects
    now = SystemClock().now()
    for n in range(3):
        cmd = Command(
            id=f"c{n}", at=now, verb="ping", worker="w1", job="j", expires_at=now, issuer=""
        )
        await manager.append(s.job_command("w1", "j"), encode(cmd), cmd.id)
    async with anyio.create_task_group() as tg:
        tg.start_soon(handler.consume)
        await anyio.sleep(0.05)
        assert handler.got == []  # no consumer yet: only the manager makes one
        await ensure_command_consumer(manager, "w1")
        with anyio.fail_after(5):
            await handler.all_there.wait()
        tg.cancel_scope.cancel()
    # Acknowledged before handled: a second reader of the consumer gets nothing again.
    again = PullConsumer(bus, s.cmd_stream, s.worker_consumer("w1"), batch=8, timeout=0.1)
    assert await again.fetch() == []
    await again.close()


async def test_the_ctl_reads_the_view_through_the_query_service(
    server: MemoryServer, view: StatusView
) -> None:
    bus = await _manager(server)
    events = a_day()
    await _append(bus, events)
    reached = _Reached(len(events))
    projector = Projector(bus, view, on_applied=reached)
    async with anyio.create_task_group() as tg:
        await tg.start(projector.run)
        await reached.wait()
        await tg.start(QueryService(bus, view).run)
        control = Control(server.connect(role="admin"))
        jobs = await control.jobs(include_removed=True, timeout=2)
        assert {(j.worker, j.name): j for j in jobs} == {
            (j.worker, j.name): j for j in fold(job_events(events)).values()
        }
        assert control.answered_by == ("", len(events))
        tg.cancel_scope.cancel()


async def test_a_consumer_that_delivers_nothing_while_the_log_is_ahead_is_made_again(
    server: MemoryServer, view: StatusView, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(projector_module, "STALL_AFTER", 0.2)
    monkeypatch.setattr(projector_module, "FETCH_WAIT", 0.05)
    bus = await _manager(server)
    events = a_day()
    await _append(bus, events[:1])
    consumer = bus.subjects.manager_consumer("m1")
    reached = _Reached(2)
    projector = Projector(bus, view, consumer=consumer, on_applied=reached)
    async with anyio.create_task_group() as tg:
        await tg.start(projector.run)
        # The one delivery of event 2 is lost and nothing follows it: no hole to see, and
        # without the watchdog the view would wait ``ack_wait`` (30 s) for it.
        server.lose(bus.subjects.evt_stream, consumer, 2)
        await _append(bus, events[1:2])
        await reached.wait()
        tg.cancel_scope.cancel()
    assert projector.rebinds == 1
    assert view.position() == 2
