"""How big a consumer's next fetch is (``mirrorbus.bus.next_fetch_size``), against a real
nats-server: one message at a time while caught up, the whole batch while a backlog waits."""

from __future__ import annotations

import pytest
from conftest import RunningServer
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mirrorbus.bus import connect, next_fetch_size, settings_from_paths
from mirrorbus.bus.consumer import delivered

pytestmark = pytest.mark.anyio


async def test_the_next_fetch_takes_a_batch_only_while_messages_wait(
    nats_server: RunningServer,
) -> None:
    settings = settings_from_paths([nats_server.url], nats_server.pki_dir, "manager")
    bus = await connect(settings, reconnect=False)
    admin = await connect(
        settings_from_paths([nats_server.url], nats_server.pki_dir, "admin"), reconnect=False
    )
    try:
        await bus.ensure_streams()
        s = bus.subjects
        for n in range(5):
            await admin.append(s.operator_events("admin"), b"{}", f"id{n}")
        sub = await bus.js.pull_subscribe(
            s.all_events,
            stream=s.evt_stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.NONE, mem_storage=True
            ),
        )
        first = [delivered(m) for m in await sub.fetch(1, timeout=5)]
        assert next_fetch_size(first, 512) == 512  # four more wait
        rest = [delivered(m) for m in await sub.fetch(512, timeout=5)]
        assert len(rest) == 4
        assert next_fetch_size(rest, 512) == 1  # caught up: wait for one
        assert next_fetch_size([], 512) == 1
        await sub.unsubscribe()
    finally:
        await admin.close()
        await bus.close()
