"""The outbox's pipelined appends (``mirrorbus.bus.AppendPipeline``) against a real
nats-server with TLS: acks come back in order with their stream sequences, a re-sent id is
not stored twice, a subject no stream holds is an error, and replies given up on are dropped.
"""

from __future__ import annotations

import anyio
import pytest
from conftest import RunningServer

from mirrorbus.bus import AppendPipeline, Bus, connect, settings_from_paths
from mirrorbus.errors import BusError
from mirrorbus.events import Subjects

pytestmark = pytest.mark.anyio


async def worker_bus(server: RunningServer, name: str = "w1") -> Bus:
    settings = settings_from_paths(
        [server.url], server.pki_dir, f"worker-{name}", inbox_prefix=Subjects.worker_inbox(name)
    )
    return await connect(settings, reconnect=False)


async def test_acks_come_in_order_and_a_resent_id_is_stored_once(
    nats_server: RunningServer,
) -> None:
    manager = await connect(
        settings_from_paths([nats_server.url], nats_server.pki_dir, "manager"), reconnect=False
    )
    bus = await worker_bus(nats_server)
    try:
        await manager.ensure_streams()
        before = await manager.last_sequence()
        subject = bus.subjects.job_events("w1", "debian")
        pipe = AppendPipeline(bus)
        serials = [await pipe.send(subject, b'{"n":%d}' % n, f"id-{n}") for n in range(300)]
        seqs = [await pipe.ack(s) for s in serials]
        assert seqs == list(range(before + 1, before + 301))  # stored in the order sent
        again = await pipe.send(subject, b'{"n":7}', "id-7")
        assert await pipe.ack(again) == before + 8  # the first sequence of that id
        assert await manager.last_sequence() == before + 300  # nothing stored twice
    finally:
        await bus.close()
        await manager.close()


async def test_no_stream_is_an_error_and_given_up_replies_are_dropped(
    nats_server: RunningServer,
) -> None:
    bus = await worker_bus(nats_server)  # no streams yet: nothing stores the subject
    manager = await connect(
        settings_from_paths([nats_server.url], nats_server.pki_dir, "manager"), reconnect=False
    )
    try:
        subject = bus.subjects.job_events("w1", "debian")
        pipe = AppendPipeline(bus)
        lost = await pipe.send(subject, b"{}", "lost")
        with pytest.raises(BusError, match="no stream"):
            await pipe.ack(lost)
        pipe.forget()
        await manager.ensure_streams()
        before = await manager.last_sequence()
        first = await pipe.send(subject, b"{}", "a")
        second = await pipe.send(subject, b"{}", "b")
        with anyio.fail_after(10):  # their replies arrive and wait to be taken
            while len(pipe._replies) < 2:  # noqa: ASYNC110 - filled by the subscription's callback
                await anyio.sleep(0.01)
        pipe.forget()  # give up on both without taking their acks
        third = await pipe.send(subject, b"{}", "c")
        assert third > second > first
        assert await pipe.ack(third) == before + 3  # a and b were stored, their acks dropped
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.3):
                await pipe.ack(first)  # forgotten: never answered again
    finally:
        await bus.close()
        await manager.close()
