"""The worker, the manager and the ctl as a user meets them, over the bus in memory.

The real objects run (:class:`~mirrorbus.worker.service.Worker`, its command handler, the
:class:`~mirrorbus.manager.service.Manager` with its projector, queries, liveness and command
consumers, and :class:`~mirrorbus.control.Control`) on :class:`~mirrorbus.bus.memory.MemoryServer`:
no server and no process, milliseconds a test.  A worker here never runs a job (that starts a
process: the fast set refuses it), so its jobs come with a history that keeps them idle: one
scheduled an hour ahead on a clock that never moves by itself, one disabled.  What a command
does is read back as a user would: the answer, and the events the worker appended to the log.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from test_memory_bus import _manager as _streams  # the manager's bus, streams made
from test_memory_bus import server, view  # noqa: F401 - the fixtures

from mirrorbus import control as control_module
from mirrorbus.bus import Bus, Message, ensure_command_consumer
from mirrorbus.bus.memory import MemoryServer
from mirrorbus.clock import ManualClock, new_id
from mirrorbus.config.worker import load_worker_config
from mirrorbus.control import Control
from mirrorbus.errors import (
    BusError,
    CommandRejected,
    NoAnswer,
    NoResponders,
    UnknownTarget,
)
from mirrorbus.events import (
    Command,
    CommandAnswered,
    CommandSent,
    Event,
    JobDisabled,
    JobPaused,
    JobScheduled,
    SizeSet,
    Verb,
    WorkerAnswered,
    decode_command,
    decode_event,
    encode,
)
from mirrorbus.events.schema import MAX_SIZE_TEXT
from mirrorbus.manager import queries as queries_module
from mirrorbus.manager import replica as replica_module
from mirrorbus.manager import service as manager_module
from mirrorbus.manager.projector import Projector
from mirrorbus.manager.queries import PositionWatch, QueryService
from mirrorbus.manager.service import Manager
from mirrorbus.worker.service import Worker
from projections.status_view import ApplyResult, StatusView

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
"""When job ``alpha`` runs next: never, since the worker's clock stays at ``T0``."""
WAIT = 3.0
"""Seconds any awaited condition gets before the test fails (they take milliseconds)."""

CONFIG = """\
[global]
name = "w1"
mirror_dir = "{root}/mirrors"
log_dir = "{root}/logs/{{{{.Name}}}}"
interval = 120

[[mirrors]]
name = "alpha"
provider = "command"
command = "/bin/true"

[[mirrors]]
name = "beta"
provider = "command"
command = "/bin/true"
"""


# -- helpers ---------------------------------------------------------------------------------
async def _history(bus: Bus) -> None:
    """What w1 did before: ``alpha`` scheduled at :data:`LATER`, ``beta`` disabled."""
    s = bus.subjects
    for event in (
        JobScheduled(id=new_id(), at=T0, worker="w1", job="alpha", next_at=LATER),
        JobDisabled(id=new_id(), at=T0, worker="w1", job="beta"),
    ):
        await bus.append(s.job_events("w1", event.job), encode(event), event.id)


def _stored(server: MemoryServer, bus: Bus) -> list[tuple[int, str, Event]]:
    """(sequence, subject, event) of every event in the log, read from the stream."""
    stream = server.streams[bus.subjects.evt_stream]
    return [(m.seq, m.subject, decode_event(m.data)) for m in stream.msgs.values()]


async def _answer(server: MemoryServer, bus: Bus, cmd_id: str) -> CommandAnswered | WorkerAnswered:
    """The worker's answer to command ``cmd_id``, once it is in the log."""
    with anyio.fail_after(WAIT):
        while True:
            for _, _, event in _stored(server, bus):
                if isinstance(event, CommandAnswered | WorkerAnswered) and event.cmd_id == cmd_id:
                    return event
            await anyio.sleep(0.005)


def _after(server: MemoryServer, bus: Bus, cmd_id: str) -> list[Event]:
    """The events that name command ``cmd_id`` (its answer and its effect)."""
    return [e for _, _, e in _stored(server, bus) if getattr(e, "cmd_id", None) == cmd_id]


@dataclass
class _Site:
    """A worker w1 running over the memory bus, and the manager's bus beside it."""

    server: MemoryServer
    manager: Bus
    worker: Worker

    def command(
        self,
        verb: Verb,
        job: str,
        *,
        worker: str = "w1",
        expires: timedelta = timedelta(minutes=1),
        size: str = "",
    ) -> Command:
        """A command given at :data:`T0` (the worker's time), valid for ``expires``."""
        return Command(
            id=new_id(),
            at=T0,
            verb=verb,
            worker=worker,
            job=job,
            size=size,
            expires_at=T0 + expires,
            issuer="",
        )

    def status(self, job: str) -> str:
        """The job's status in the worker's live state (the fold of its events)."""
        return self.worker.jobs[job].state.status

    async def send(
        self, cmd: Command, subject: str | None = None
    ) -> CommandAnswered | WorkerAnswered:
        """Append ``cmd`` on the command subject of its job (or ``subject``); its answer."""
        target = subject or self.manager.subjects.job_command("w1", cmd.job)
        await self.manager.append(target, encode(cmd), cmd.id)
        return await _answer(self.server, self.manager, cmd.id)


@asynccontextmanager
async def _worker(
    server: MemoryServer, tmp_path: Path, *, consumer: bool = True
) -> AsyncIterator[Worker]:
    """Worker w1 (config :data:`CONFIG`, clock at :data:`T0`), started, stopped at the end."""
    path = tmp_path / "w1.toml"
    path.write_text(CONFIG.format(root=tmp_path))
    if consumer:  # (the manager's part; see test_the_manager_makes_a_new_workers_command_consumer)
        await ensure_command_consumer(server.connect(role="manager"), "w1")
    worker = Worker(load_worker_config(path), server.connect(role="worker-w1"), ManualClock(T0))
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        try:
            yield worker
        finally:
            worker.stop()


@pytest.fixture
async def w1(server: MemoryServer, tmp_path: Path) -> AsyncIterator[_Site]:
    manager = await _streams(server)
    await _history(manager)
    async with _worker(server, tmp_path) as worker:
        yield _Site(server, manager, worker)


# -- 1. the worker's commands ------------------------------------------------------------------
async def test_ping_answers_with_the_jobs_state_and_changes_nothing(w1: _Site) -> None:
    cmd = w1.command("ping", "alpha")
    answer = await w1.send(cmd)
    assert isinstance(answer, CommandAnswered)
    assert (answer.worker, answer.job, answer.verb, answer.accepted) == (
        "w1",
        "alpha",
        "ping",
        True,
    )
    assert answer.message == "pong: none, next run 2026-12-06 13:00:00Z"
    assert _after(w1.server, w1.manager, cmd.id) == [answer]  # nothing else happened
    assert w1.worker.scheduler.next_time("alpha") == LATER
    disabled = await w1.send(w1.command("ping", "beta"))
    assert disabled.message == "pong: disabled, not scheduled"


async def test_stop_and_disable_of_an_idle_job_pause_and_disable_it(w1: _Site) -> None:
    stop = w1.command("stop", "alpha")
    answer = await w1.send(stop)
    assert (answer.accepted, answer.message) == (True, "paused")
    paused, answered = _after(w1.server, w1.manager, stop.id)
    assert isinstance(paused, JobPaused) and (paused.worker, paused.job) == ("w1", "alpha")
    assert answered == answer  # the effect is in the log before the answer
    assert w1.status("alpha") == "paused"
    assert w1.worker.scheduler.next_time("alpha") is None  # no longer scheduled

    disable = w1.command("disable", "alpha")
    answer = await w1.send(disable)
    assert (answer.accepted, answer.message) == (True, "disabled")
    assert [type(e) for e in _after(w1.server, w1.manager, disable.id)] == [
        JobDisabled,
        CommandAnswered,
    ]
    assert w1.status("alpha") == "disabled"


async def test_stop_of_a_disabled_job_is_refused(w1: _Site) -> None:
    stop = w1.command("stop", "beta")
    answer = await w1.send(stop)
    assert (answer.accepted, answer.message) == (
        False,
        "job is disabled; use start or restart to enable it",
    )
    assert _after(w1.server, w1.manager, stop.id) == [answer]
    assert w1.status("beta") == "disabled"


async def test_an_expired_command_is_answered_so_and_not_executed(w1: _Site) -> None:
    stop = w1.command("stop", "alpha", expires=-timedelta(seconds=1))
    answer = await w1.send(stop)
    assert isinstance(answer, CommandAnswered) and not answer.accepted
    assert answer.message == (
        "expired: given at 2026-12-06 12:00:00Z, valid until 11:59:59Z; not executed"
    )
    assert _after(w1.server, w1.manager, stop.id) == [answer]  # no JobPaused
    assert w1.worker.scheduler.next_time("alpha") == LATER
    # An expired command for an unknown job is answered "expired" by the worker itself.
    other = await w1.send(w1.command("ping", "nope", expires=-timedelta(seconds=1)))
    assert isinstance(other, WorkerAnswered) and other.message.startswith("expired: ")


async def test_a_command_for_an_unknown_job_is_answered_so(w1: _Site) -> None:
    answer = await w1.send(w1.command("stop", "nope"))
    assert isinstance(answer, WorkerAnswered)
    assert (answer.worker, answer.job, answer.accepted) == ("w1", "nope", False)
    assert answer.message == "unknown job 'nope' on worker w1"


async def test_a_command_whose_body_names_another_target_than_its_subject_is_ignored(
    w1: _Site,
) -> None:
    s = w1.manager.subjects
    # Another worker's name in a command on w1's subject (a worker may not command another).
    other_worker = w1.command("stop", "alpha", worker="w2")
    answer = await w1.send(other_worker)
    assert isinstance(answer, WorkerAnswered) and not answer.accepted
    assert (
        answer.message == f"command for w2/alpha arrived on {s.job_command('w1', 'alpha')}; ignored"
    )
    # Another job's name than the subject's: neither job is touched.
    other_job = w1.command("stop", "alpha")
    answer = await w1.send(other_job, subject=s.job_command("w1", "beta"))
    assert not answer.accepted
    assert (
        answer.message == f"command for w1/alpha arrived on {s.job_command('w1', 'beta')}; ignored"
    )
    for cmd in (other_worker, other_job):
        assert [type(e) for e in _after(w1.server, w1.manager, cmd.id)] == [WorkerAnswered]
    assert w1.status("alpha") == "none"
    assert w1.worker.scheduler.next_time("alpha") == LATER


async def test_set_size_is_recorded_and_an_oversized_one_refused(w1: _Site) -> None:
    big = w1.command("set-size", "alpha", size="9" * (MAX_SIZE_TEXT + 1))
    answer = await w1.send(big)
    assert (answer.accepted, answer.message) == (
        False,
        f"size of {MAX_SIZE_TEXT + 1} characters refused: at most {MAX_SIZE_TEXT} (e.g. 1.2T)",
    )
    assert _after(w1.server, w1.manager, big.id) == [answer]
    fine = w1.command("set-size", "alpha", size=" 1.5T ")
    answer = await w1.send(fine)
    assert (answer.accepted, answer.message) == (True, "size set to 1.5T")
    size_set = _after(w1.server, w1.manager, fine.id)[0]
    assert isinstance(size_set, SizeSet) and size_set.size == "1.5T"
    assert w1.worker.jobs["alpha"].state.size == "1.5T"


async def test_a_copy_the_server_stored_as_an_answer_is_not_a_command(w1: _Site) -> None:
    s = w1.manager.subjects
    forged = w1.command("stop", "alpha")
    # A direct get answered onto the command subject: the server stores the copy with the
    # headers of its answer (``Nats-Sequence`` among them), which no append of ours has.
    headers = {"Nats-Stream": s.evt_stream, "Nats-Sequence": "1", "Nats-Msg-Id": forged.id}
    await w1.manager.js.publish(s.job_command("w1", "alpha"), encode(forged), headers=headers)
    # The next command is handled after it: by its answer, the copy was dropped unanswered.
    await w1.send(w1.command("ping", "alpha"))
    assert _after(w1.server, w1.manager, forged.id) == []
    assert w1.status("alpha") == "none"


async def test_the_issuer_is_taken_from_the_subject_not_the_body(w1: _Site) -> None:
    s = w1.manager.subjects
    cmd = w1.command("ping", "alpha")
    answer = await w1.send(cmd, subject=s.issued_by(s.job_command("w1", "alpha"), "admin-alice"))
    assert answer.accepted and answer.issuer == "CN=mirrorbus-admin-alice"


# -- 2 and 3. the ctl against the manager --------------------------------------------------------
@asynccontextmanager
async def _manager(server: MemoryServer, view: StatusView) -> AsyncIterator[Manager]:
    """Manager replica m1 over the memory bus, started; its liveness written every 20 ms."""
    manager = Manager(server.connect(role="manager"), view, name="m1")
    manager.liveness.flush_every = 0.02
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        yield manager
        tg.cancel_scope.cancel()


@pytest.fixture
def quick_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    """The manager's check for a second replica of its name gathers answers for 20 ms."""
    monkeypatch.setattr(
        manager_module, "check_alone", functools.partial(replica_module.check_alone, window=0.02)
    )


async def _until(condition: Callable[[], object]) -> None:
    """Once ``condition()`` holds: state the services change without an event to wait on."""
    with anyio.fail_after(WAIT):
        while not condition():  # noqa: ASYNC110 - a stream, a consumer table, a service's count
            await anyio.sleep(0.005)


@pytest.mark.usefixtures("quick_claim")
async def test_the_manager_makes_a_new_workers_command_consumer(
    server: MemoryServer, view: StatusView, tmp_path: Path
) -> None:
    s = server.connect().subjects
    async with _manager(server, view) as manager:
        bus = server.connect(role="manager")
        consumers = server.streams[s.cmd_stream].consumers
        # A command sent before the worker ever ran: it waits in the stream.
        early = Command(
            id=new_id(),
            at=T0,
            verb="ping",
            worker="w1",
            job="alpha",
            expires_at=T0 + timedelta(minutes=1),
            issuer="",
        )
        await bus.append(s.job_command("w1", "alpha"), encode(early), early.id)
        assert view.workers() == [] and s.worker_consumer("w1") not in consumers
        # The worker's first events (any: here its jobs'): the manager makes its consumer.
        await _history(bus)
        await _until(lambda: s.worker_consumer("w1") in consumers)
        assert manager.consumers.made == {"w1"}
        assert consumers[s.worker_consumer("w1")].config.filter_subject == s.worker_commands("w1")
        # The worker takes the command that waited for it.
        async with _worker(server, tmp_path, consumer=False):
            answer = await _answer(server, bus, early.id)
            assert answer.accepted and answer.message.startswith("pong: ")


@pytest.mark.usefixtures("quick_claim")
async def test_the_ctl_lists_jobs_and_workers_with_their_liveness(
    server: MemoryServer, view: StatusView, tmp_path: Path
) -> None:
    await _history(await _streams(server))
    async with _manager(server, view), _worker(server, tmp_path):
        control = Control(server.connect(role="reader"))

        async def heard() -> bool:
            rows = await control.workers(timeout=1)
            return bool(rows) and rows[0].last_heartbeat is not None

        with anyio.fail_after(WAIT):
            while not await heard():  # noqa: ASYNC110 - the view, through the queries
                await anyio.sleep(0.01)
        (row,) = await control.workers()
        assert (row.name, row.online, row.jobs, row.concurrent) == ("w1", True, 2, 10)
        jobs = {j.name: j for j in await control.jobs("w1")}
        assert {n: (j.worker, j.status) for n, j in jobs.items()} == {
            "alpha": ("w1", "none"),
            "beta": ("w1", "disabled"),
        }
        assert jobs["alpha"].next_schedule == LATER
        assert control.answered_by is not None and control.answered_by[0] == "m1"
        assert (await control.ping()).replica == "m1"


@pytest.mark.usefixtures("quick_claim")
async def test_a_ctl_command_is_sent_after_its_record_and_read_back_at_its_position(
    server: MemoryServer, view: StatusView, tmp_path: Path, pki_dir: Path
) -> None:
    await _history(await _streams(server))
    watcher = server.connect(role="manager")
    s = watcher.subjects
    logged: list[tuple[str, bool]] = []  # each command's subject, and whether its record was

    async def note(msg: Message) -> None:  # seen as the command is stored
        cmd_id = decode_command(msg.data).id
        sent = [e for _, _, e in _stored(server, watcher) if isinstance(e, CommandSent)]
        logged.append((msg.subject, any(e.cmd_id == cmd_id for e in sent)))

    sub = await watcher.subscribe(s.worker_commands("w1"), note)
    try:
        async with _manager(server, view), _worker(server, tmp_path):
            admin = server.connect(role="admin", certs=pki_dir)
            control = Control(admin, positions=True)
            answer = await control.command("stop", "w1", "alpha", timeout=WAIT)
            assert (answer.worker, answer.job, answer.accepted, answer.message) == (
                "w1",
                "alpha",
                True,
                "paused",
            )
            # The admin's command carries its token on the subject, after its record on the
            # admin's own subject of the log.
            sent_on = s.operator_events("admin")
            assert logged == [(s.issued_by(s.job_command("w1", "alpha"), "admin"), True)]
            (record,) = [e for _, subj, e in _stored(server, admin) if subj == sent_on]
            assert isinstance(record, CommandSent)
            assert (record.cmd_id, record.worker, record.job, record.verb) == (
                answer.cmd_id,
                "w1",
                "alpha",
                "stop",
            )
            reply = await _answer(server, admin, answer.cmd_id)
            assert reply.issuer == "CN=mirrorbus-admin"  # from the subject's token
            # Read your write: a query at the answer's position sees the job paused.
            assert answer.position > 0
            reader = Control(server.connect(role="reader"), min_position=answer.position)
            (alpha,) = [j for j in await reader.jobs("w1") if j.name == "alpha"]
            assert alpha.status == "paused"
            assert reader.answered_by is not None and reader.answered_by[1] >= answer.position
            # A refused command raises with the worker's reason.
            with pytest.raises(CommandRejected, match="job is disabled"):
                await control.command("stop", "w1", "beta", timeout=WAIT)
    finally:
        await sub.unsubscribe()


@pytest.mark.usefixtures("quick_claim")
async def test_a_command_to_an_unknown_target_is_refused_before_it_is_sent(
    server: MemoryServer, view: StatusView, tmp_path: Path
) -> None:
    await _history(await _streams(server))
    async with _manager(server, view), _worker(server, tmp_path):
        control = Control(server.connect(role="admin"))
        with pytest.raises(UnknownTarget, match=r"^unknown job 'nope' on worker w1$"):
            await control.command("ping", "w1", "nope", timeout=WAIT)
        with pytest.raises(UnknownTarget, match=r"^unknown worker 'w9' \(known workers: w1\)$"):
            await control.command("ping", "w9", "alpha", timeout=WAIT)
        commands = server.streams[control.bus.subjects.cmd_stream].msgs
        assert commands == {}  # neither was sent


async def test_a_query_with_a_position_waits_for_the_view_to_reach_it(
    server: MemoryServer, view: StatusView
) -> None:
    bus = await _streams(server)
    await _history(bus)
    watch = PositionWatch()

    def applied(result: ApplyResult) -> None:
        watch.advance(result.position)

    projector = Projector(bus, view, on_applied=applied)
    service = QueryService(bus, view, watch=watch)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        # The log holds event 3 (a pause) but nothing projects it yet.
        pause = JobPaused(id=new_id(), at=T0, worker="w1", job="alpha")
        await bus.append(bus.subjects.job_events("w1", "alpha"), encode(pause), pause.id)
        control = Control(server.connect(role="reader"), min_position=3)
        got: list[str] = []

        async def ask() -> None:
            got.extend(j.status for j in await control.jobs("w1") if j.name == "alpha")

        tg.start_soon(ask)
        await _until(lambda: service._waiting == 1)
        assert got == []  # waiting for the view, not answered from the old one
        await tg.start(projector.run)
        await _until(lambda: got)
        assert got == ["paused"] and control.answered_by == ("", 3)
        tg.cancel_scope.cancel()


async def test_a_query_for_a_position_no_replica_reaches_fails_saying_so(
    server: MemoryServer, view: StatusView, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries_module, "MAX_CATCH_UP_WAIT", 0.05)
    bus = await _streams(server)
    await _history(bus)  # events 1 and 2, never projected
    async with anyio.create_task_group() as tg:
        await tg.start(QueryService(bus, view, watch=PositionWatch()).run)
        control = Control(server.connect(role="reader"), min_position=2)
        with pytest.raises(BusError) as caught:
            await control.jobs(timeout=0.2)
        assert str(caught.value) == (
            "no manager replica reached event 2 of the log within 0.2s "
            "(--min-position 0 takes any replica)"
        )
        tg.cancel_scope.cancel()


async def test_a_query_nobody_answers_fails_at_once_saying_so(server: MemoryServer) -> None:
    await _streams(server)
    control = Control(server.connect(role="reader"))
    with anyio.fail_after(1):  # not the query's timeout: "no responders" ends it
        with pytest.raises(BusError) as caught:
            await control.jobs(timeout=10)
    assert str(caught.value) == "nobody answers on mirrorbus.api.jobs: is the manager running?"
    with pytest.raises(NoResponders):  # a plain request says it with its own type
        await control.bus.request(control.bus.subjects.api("ping"), b"{}", timeout=1)


@pytest.mark.usefixtures("quick_claim")
async def test_a_ctl_reload_applies_the_new_config_or_keeps_the_running_one(
    server: MemoryServer, view: StatusView, tmp_path: Path
) -> None:
    await _history(await _streams(server))
    async with _manager(server, view), _worker(server, tmp_path) as worker:
        control = Control(server.connect(role="admin"))
        path = worker.config.path
        # beta changes (disabled: it stays so, and does not run); alpha does not.
        path.write_text(CONFIG.format(root=tmp_path) + "retry = 5\n")
        answer = await control.command("reload", "w1", None, timeout=WAIT)
        assert answer.accepted and answer.job == ""
        assert answer.message == f"reloaded {path}: 0 added, 0 removed, 1 modified"
        assert worker.jobs["beta"].mirror.retry == 5 and worker.jobs["alpha"].mirror.retry != 5
        assert worker.jobs["beta"].state.status == "disabled"
        scheduled = [e for _, _, e in _stored(server, control.bus) if isinstance(e, JobScheduled)]
        assert [(e.job, e.next_at) for e in scheduled] == [("alpha", LATER)]  # the history's
        assert worker.scheduler.next_time("alpha") == LATER
        # A config that does not load changes nothing, and the ctl says why.
        path.write_text("[global\n")
        with pytest.raises(
            CommandRejected, match=r"^rejected: config not reloaded, the running one stays: "
        ):
            await control.command("reload", "w1", None, timeout=WAIT)
        assert worker.jobs["beta"].mirror.retry == 5


@pytest.mark.usefixtures("quick_claim")
async def test_a_command_to_a_stopped_worker_waits_for_it_queued(
    server: MemoryServer, view: StatusView, tmp_path: Path
) -> None:
    bus = await _streams(server)
    await _history(bus)
    async with _manager(server, view):
        control = Control(server.connect(role="admin"))
        with pytest.raises(NoAnswer) as caught:
            await control.command("ping", "w1", "alpha", timeout=0.2)
        assert re.fullmatch(
            r"no answer from worker w1 within 0\.2s \(.+, last seen .+\); the command stays "
            r"queued until \d\d:\d\d:\d\d and is dropped after that",
            str(caught.value),
        )
        (stored,) = server.streams[bus.subjects.cmd_stream].msgs.values()
        queued = decode_command(stored.data)
        async with _worker(server, tmp_path):  # started later: it answers the queued ping
            answer = await _answer(server, bus, queued.id)
            assert answer.accepted and answer.message.startswith("pong: ")


async def test_a_commands_position_is_found_when_the_run_ended_while_it_was_looked_for(
    server: MemoryServer,
) -> None:
    """``ctl start`` of a job that ends at once: the run's end is stored (and reaches the
    ctl) while the ctl asks where its answer's effect is.  The position is that of the end,
    found at once, not 0 after the search gives up (a 2 s pause of every such command)."""
    manager = await _streams(server)
    subject = manager.subjects.job_events("w1", "alpha")
    started = JobScheduled(id=new_id(), at=T0, worker="w1", job="alpha", next_at=LATER)
    ended = JobScheduled(id=new_id(), at=T0, worker="w1", job="alpha", next_at=LATER)
    await manager.append(subject, encode(started), started.id)
    end_at = await manager.append(subject, encode(ended), ended.id)
    seen = [(subject, started.id)]  # what the ctl had seen when it began to look

    async def the_end_arrives() -> None:
        await anyio.sleep(0.05)
        seen.append((subject, ended.id))

    control = Control(manager, positions=True)
    with anyio.fail_after(control_module.STORED_WAIT / 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(the_end_arrives)
            assert await control._stored_at(subject, seen, 0) == end_at
