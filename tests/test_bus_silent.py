"""A client whose server goes silent moves on within seconds, without root or namespaces.

The network drills (tests/test_netdrills.py, drill silent-node) show it across hosts; this is
the same fault on loopback: the client reaches a real nats-server (mutual TLS) through a small
TCP relay in the test, and the relay then stops passing anything on the connection it carries
while keeping it open, as a node cut off by a silent partition does (no RST, no FIN).  New
connections through the relay work, as those to another node would.

What it guards: the client notices the dead connection from its unanswered PINGs, and then
does not wait for that TLS connection to close cleanly (nats-py waits for the peer's
close_notify for 30 s, and with data it cannot send, until TCP gives up) before it reconnects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import ByteReceiveStream, ByteSendStream, SocketStream
from conftest import RunningServer

from mirrorbus.bus import connect, settings_from_paths
from mirrorbus.bus.connection import CLOSE_WAIT, MAX_OUTSTANDING_PINGS, PING_INTERVAL
from mirrorbus.errors import BusError

pytestmark = [pytest.mark.anyio, pytest.mark.e2e]

STALE_AFTER = PING_INTERVAL * (MAX_OUTSTANDING_PINGS + 1)


@dataclass
class Relay:
    """TCP relay to ``port``; :meth:`silence` makes the connections it carries go quiet."""

    port: int
    carried: list[anyio.Event] = field(default_factory=list)

    async def handle(self, client: SocketStream) -> None:
        quiet = anyio.Event()
        self.carried.append(quiet)
        async with client, await anyio.connect_tcp("127.0.0.1", self.port) as upstream:

            async def pipe(source: ByteReceiveStream, sink: ByteSendStream) -> None:
                async for chunk in source:
                    if quiet.is_set():
                        await anyio.sleep_forever()  # read nothing more, send nothing
                    await sink.send(chunk)

            async with anyio.create_task_group() as tg:
                tg.start_soon(pipe, client, upstream)
                tg.start_soon(pipe, upstream, client)

    def silence(self) -> None:
        for quiet in self.carried:
            quiet.set()


async def test_a_silent_server_connection_is_replaced_within_seconds(
    nats_server: RunningServer,
) -> None:
    relay = Relay(nats_server.port)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    relay_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, relay.handle)
        settings = settings_from_paths(
            [f"tls://127.0.0.1:{relay_port}"], nats_server.pki_dir, "admin", name="silent-test"
        )
        bus = await connect(settings)
        try:
            assert len(relay.carried) == 1
            await bus.nc.flush(timeout=5)
            relay.silence()
            # Noticed after STALE_AFTER; then CLOSE_WAIT for the old connection, a second
            # before the new attempt, the TLS handshake.  Without the bounded close it takes
            # 30 s more.
            with anyio.fail_after(STALE_AFTER + CLOSE_WAIT + 8):
                # Polled: nats-py's reconnect callback is not part of connect()'s interface.
                while not (bus.nc.stats["reconnects"] >= 1 and bus.nc.is_connected):  # noqa: ASYNC110
                    await anyio.sleep(0.2)
            assert len(relay.carried) >= 2  # a new connection, through the relay again
            await bus.nc.flush(timeout=5)  # and it works: the server answers its PING
            info = await bus.js.account_info()
            assert info.streams >= 0
        finally:
            await bus.close()
            tg.cancel_scope.cancel()


async def test_a_client_that_does_not_reconnect_tries_the_next_server(
    nats_server: RunningServer,
) -> None:
    """The ctl's connection: two of three servers take the TCP connection and say nothing (a
    hung node, a link that loses the handshake); every connection reaches the third, after
    at most a short wait on each silent one.  nats-py alone gives up at the first server
    whose handshake fails, so two of three ctl calls failed on such a cluster."""
    held: list[SocketStream] = []

    async def hold(client: SocketStream) -> None:
        async with client:  # (closed when the test ends)
            held.append(client)
            await anyio.sleep_forever()

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as one,
        await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as two,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(one.serve, hold)
        tg.start_soon(two.serve, hold)
        silent = [
            f"tls://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"
            for listener in (one, two)
        ]
        settings = settings_from_paths([*silent, nats_server.url], nats_server.pki_dir, "admin")
        for _ in range(4):  # the order is random: each time another one first
            bus = await connect(settings, connect_timeout=0.5, reconnect=False)
            try:
                await bus.nc.flush(timeout=5)
                assert bus.nc.connected_url is not None
                assert bus.nc.connected_url.port == nats_server.port
            finally:
                await bus.close()
        assert held  # the silent ones were tried

        only_silent = settings_from_paths(silent, nats_server.pki_dir, "admin")
        with pytest.raises(BusError, match=r"as admin\.crt: no answer within 0\.5s"):
            await connect(only_silent, connect_timeout=0.5, reconnect=False)
        tg.cancel_scope.cancel()
