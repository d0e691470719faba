"""Old events cannot be replayed into the log, nor commands forged through it: a copy the
server stores as an answer is set aside by every reader.

Any client may name any reply subject, and the server publishes its own answers there
whatever the requester may publish: a reader's direct get of an old event, with a reply
subject of ``<prefix>.evt.<worker>.<job>``, makes the server append a copy of that event to
the log.  The stream's duplicate window (two minutes) stops a copy of an event appended with
its id only within that window; the events here are appended without one, as if the window
had passed.  The copy is stored, so each reader must tell it apart: the manager's consumer,
a rebuild and a reader's ``mirrorbus project`` (batched direct gets), a worker's restore, and
a worker's command consumer (a copy answered onto a command subject).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from conftest import RunningServer, connect
from e2e import Site, wait_for
from nats.aio.client import Client
from test_e2e_worker import COUNTING_JOB
from test_restore import _bus
from test_tamper_reading import _append, _manager, _rebuild_equals, _wait_position

from mirrorbus.bus import REPLAYED
from mirrorbus.events import (
    Command,
    JobConfigured,
    SizeSet,
    WorkerSnapshot,
    encode,
    encode_snapshot,
)
from mirrorbus.events.subjects import Subjects
from mirrorbus.worker.restore import restore

pytestmark = pytest.mark.anyio
S = Subjects()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _history() -> list[tuple[str, bytes]]:
    subject = S.job_events("w1", "j0")
    return [
        (subject, encode(JobConfigured(id="c", at=T0, worker="w1", job="j0", upstream="u"))),
        (subject, encode(SizeSet(id="s1", at=T0, worker="w1", job="j0", size="1G"))),
        (subject, encode(SizeSet(id="s2", at=T0, worker="w1", job="j0", size="2G"))),
    ]


async def _replay(reader: Client, stream: str, seq: int, reply: str) -> int:
    """Ask for message ``seq`` of ``stream`` by direct get, the answer going to ``reply``;
    the sequence of the copy the server stored."""
    js = reader.jetstream()
    before = int((await js.stream_info(stream)).state.last_seq)
    await reader.publish(
        f"$JS.API.DIRECT.GET.{stream}", json.dumps({"seq": seq}).encode(), reply=reply
    )
    await reader.flush()
    with anyio.fail_after(10):
        while (last := int((await js.stream_info(stream)).state.last_seq)) == before:  # noqa: ASYNC110 - the server's state, polled
            await anyio.sleep(0.05)
    return last


async def test_a_reader_replaying_an_old_event_changes_no_view_and_no_restore(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    async with _manager(nats_server, tmp_path / "view.db") as manager:
        w1 = await connect(nats_server, "worker", "w1")
        reader = await connect(nats_server, "reader")
        try:
            last = await _append(w1, _history())
            await _wait_position(manager.view, last)
            old_size = last - 1  # the SizeSet to 1G
            copy = await _replay(reader, S.evt_stream, old_size, S.job_events("w1", "j0"))
            assert copy > last  # the attack stored a copy in the log
            await _wait_position(manager.view, copy)
            assert [j.size for j in manager.view.jobs("w1")] == ["2G"]
            dead = manager.view.dead_letters()
            assert [(seq, reason) for seq, _, reason in dead] == [(copy, REPLAYED)]
        finally:
            await w1.close()
            await reader.close()
        # A rebuild reads by direct get, where the copy shows differently: the same view.
        await _rebuild_equals(nats_server, manager.view, tmp_path / "rebuilt.db")
        bus = await _bus(nats_server, "worker", "w1")
        try:
            restored = await restore(bus, "w1")
        finally:
            await bus.close()
        assert restored.states["j0"].size == "2G"
        assert restored.folded == 3


async def test_a_replayed_snapshot_is_not_restored_from(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """A copy of the worker's snapshot stored over it: the worker restores from the events
    instead (the same states), not from the copy."""
    async with _manager(nats_server, tmp_path / "view.db"):
        w1 = await connect(nats_server, "worker", "w1")
        reader = await connect(nats_server, "reader")
        bus = await _bus(nats_server, "worker", "w1")
        try:
            await _append(w1, _history())
            js = w1.jetstream()
            snap = WorkerSnapshot(id="snap", at=T0, worker="w1", seq=1, jobs=())
            stored = await js.publish(S.snapshot("w1"), encode_snapshot(snap))
            await _replay(reader, S.snap_stream, int(stored.seq), S.snapshot("w1"))
            restored = await restore(bus, "w1")
            assert restored.snapshot_seq == 0  # the copy was not taken for a snapshot
            assert restored.states["j0"].size == "2G"
            assert restored.states["j0"].upstream == "u"
        finally:
            await bus.close()
            await w1.close()
            await reader.close()


def test_a_worker_cannot_send_a_command_through_a_servers_answer(
    site: Site, nats_server: RunningServer
) -> None:
    """w2 writes a "disable" for w1's job into its own events (it may write anything there),
    then asks for that message by direct get with w1's command subject, under the admin's
    token, as the reply subject: the server stores its answer in the command stream, where w1's
    consumer delivers it.  w1 must not take it for the admin's command."""
    config = site.worker_config("w1", COUNTING_JOB.format(name="kept", interval=60))
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "kept", lambda j: j.status == "success")
    wait_for(lambda: site.ctl("ping", "-w", "w1", "kept").returncode == 0, 20, "an honest command")

    async def forge() -> None:
        w2 = await connect(nats_server, "worker", "w2")
        try:
            now = datetime.now(UTC)
            cmd = Command(
                id="forged",
                at=now,
                verb="disable",
                worker="w1",
                job="kept",
                expires_at=now + timedelta(seconds=600),
            )
            ack = await w2.jetstream().publish(S.job_events("w2", "x"), encode(cmd))
            target = S.issued_by(S.job_command("w1", "kept"), "admin")
            await w2.publish(
                f"$JS.API.DIRECT.GET.{S.evt_stream}",
                json.dumps({"seq": ack.seq}).encode(),
                reply=target,
            )
            await w2.flush()
        finally:
            await w2.close()

    anyio.run(forge)
    # Commands are taken in order: once a later honest one is answered, the copy was seen.
    wait_for(
        lambda: "it is a copy of an older message" in site.output("worker"),
        20,
        "the worker dropping the copy",
    )
    assert site.ctl("ping", "-w", "w1", "kept").returncode == 0
    assert [j.status for j in site.view.jobs("w1")] != ["disabled"]
    assert site.ctl("list", "-w", "w1").returncode == 0


async def test_an_answer_routed_onto_the_jetstream_api_deletes_nothing(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """The server's answer to a reader's direct get, sent onto JetStream's own API subjects
    (delete a stream, purge the log, delete the manager's consumer): the server publishes it
    there itself, past the reader's permissions, but its API takes no such message for a
    request.  Every stream, event and consumer is still there."""
    async with _manager(nats_server, tmp_path / "view.db") as manager:
        w1 = await connect(nats_server, "worker", "w1")
        reader = await connect(nats_server, "reader")
        try:
            last = await _append(w1, _history())
            await _wait_position(manager.view, last)
            consumer = S.manager_consumer(manager.name)
            targets = [
                f"$JS.API.STREAM.DELETE.{S.snap_stream}",
                f"$JS.API.STREAM.DELETE.{S.evt_stream}",
                f"$JS.API.STREAM.PURGE.{S.evt_stream}",
                f"$JS.API.CONSUMER.DELETE.{S.evt_stream}.{consumer}",
            ]
            for target in targets:
                request = json.dumps({"seq": 1}).encode()
                await reader.publish(f"$JS.API.DIRECT.GET.{S.evt_stream}", request, reply=target)
            await reader.flush()
            # The stream serves direct gets in order: once the reader's own one is answered,
            # the answers above went out; then one more round of the API behind them.
            await reader.jetstream().get_msg(S.evt_stream, 1, direct=True)
            js = w1.jetstream()
            await js.publish(S.job_events("w1", "j0"), _history()[1][1])
            for stream in (S.evt_stream, S.snap_stream, S.cmd_stream):
                await manager.bus.js.stream_info(stream)  # raises if deleted
            assert int((await js.stream_info(S.evt_stream)).state.messages) == last + 1
            await manager.bus.js.consumer_info(S.evt_stream, consumer)
            await _wait_position(manager.view, last + 1)
        finally:
            await w1.close()
            await reader.close()
