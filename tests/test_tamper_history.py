"""History cannot be erased or rewritten: attacks on the streams with each role's certificate.

Each attack is what someone holding that certificate would try with nats-py against the real
server.  It must fail (a "permissions violation" from the server, or the stream's own refusal)
and leave every event where it was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from conftest import RunningServer, connect
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RePublish, StreamConfig, StreamSource
from test_permissions import DENIED, _assert_denied, _streams

from mirrorbus.bus import connect as bus_connect
from mirrorbus.bus import settings_from_paths
from mirrorbus.events.codec import MAX_MESSAGE_BYTES
from mirrorbus.events.subjects import Subjects

pytestmark = pytest.mark.anyio
S = Subjects()
EVENTS = 3


async def _log_with_events(server: RunningServer) -> Client:
    """The streams as the manager makes them, ``EVENTS`` events of w1; an admin connection."""
    admin = await _streams(server)
    w1 = await connect(server, "worker", "w1")
    try:
        for n in range(EVENTS):
            await w1.jetstream().publish(S.job_events("w1", "job"), b"{}", headers={"n": str(n)})
    finally:
        await w1.close()
    return admin


async def _state(admin: Client) -> tuple[int, int, int, bool, bool]:
    info = await admin.jetstream().stream_info(S.evt_stream)
    return (
        int(info.state.messages),
        int(info.state.first_seq),
        int(info.config.max_age or 0),
        bool(info.config.deny_delete),
        bool(info.config.deny_purge),
    )


Attack = tuple[str, Callable[[JetStreamContext], Awaitable[Any]]]

ATTACKS: list[Attack] = [
    (f"$JS.API.STREAM.MSG.DELETE.{S.evt_stream}", lambda js: js.delete_msg(S.evt_stream, 2)),
    (
        f"$JS.API.STREAM.PURGE.{S.evt_stream}",
        lambda js: js.purge_stream(S.evt_stream, subject=S.job_events("w1", "job")),
    ),
    (f"$JS.API.STREAM.DELETE.{S.evt_stream}", lambda js: js.delete_stream(S.evt_stream)),
    (f"$JS.API.STREAM.DELETE.{S.snap_stream}", lambda js: js.delete_stream(S.snap_stream)),
    (
        f"$JS.API.STREAM.UPDATE.{S.evt_stream}",
        lambda js: js.update_stream(
            StreamConfig(name=S.evt_stream, subjects=[S.all_events], max_age=1.0)
        ),
    ),
    # A stream of its own that republishes into a worker's event subject: a forged event
    # would reach the log without the client ever publishing on the subject.
    (
        "$JS.API.STREAM.CREATE.FORGE",
        lambda js: js.add_stream(
            StreamConfig(
                name="FORGE",
                subjects=["forge.>"],
                republish=RePublish(src="forge.>", dest=S.job_events("w1", "job")),
            )
        ),
    ),
    # ... or that sources the event stream (a copy it could then alter at will).
    (
        "$JS.API.STREAM.CREATE.COPY",
        lambda js: js.add_stream(StreamConfig(name="COPY", sources=[StreamSource(S.evt_stream)])),
    ),
]


@pytest.mark.parametrize(
    ("role", "name"), [("admin", None), ("reader", None), ("worker", "w1"), ("worker", "w2")]
)
async def test_no_client_role_deletes_purges_or_rewrites_the_log(
    nats_server: RunningServer, role: str, name: str | None
) -> None:
    admin = await _log_with_events(nats_server)
    errors: list[Exception] = []
    attacker = await connect(nats_server, role, name, errors=errors)
    try:
        before = await _state(admin)
        assert before == (EVENTS, 1, 0, True, True)
        js = attacker.jetstream(timeout=DENIED)
        for subject, attack in ATTACKS:
            with pytest.raises(nats.errors.TimeoutError):
                await attack(js)
            _assert_denied(errors, subject)
        assert await _state(admin) == before
        assert await _stream_count(nats_server) == 3  # neither FORGE nor COPY
    finally:
        await attacker.close()
        await admin.close()


async def _stream_count(server: RunningServer) -> int:
    manager = await connect(server, "manager")
    try:
        return int((await manager.jetstream().account_info()).streams)
    finally:
        await manager.close()


async def test_even_the_manager_cannot_delete_purge_or_lift_the_protection(
    nats_server: RunningServer,
) -> None:
    admin = await _log_with_events(nats_server)
    errors: list[Exception] = []
    manager = await connect(nats_server, "manager", errors=errors)
    try:
        before = await _state(admin)
        js = manager.jetstream()
        # It may update the streams (its start does), but the server refuses to lift the
        # protection once set ...
        config = (await js.stream_info(S.evt_stream)).config
        config.deny_delete = False
        with pytest.raises(nats.js.errors.APIError, match="can not cancel deny"):
            await js.update_stream(config)
        config.deny_delete, config.deny_purge = True, False
        with pytest.raises(nats.js.errors.APIError, match="can not cancel deny"):
            await js.update_stream(config)
        # ... and it has no right to delete or purge either.
        for subject, attack in ATTACKS[:4]:
            with pytest.raises(nats.errors.TimeoutError):
                await attack(manager.jetstream(timeout=DENIED))
            _assert_denied(errors, subject)
        assert await _state(admin) == before
    finally:
        await manager.close()
        await admin.close()


async def test_the_manager_start_protects_streams_an_older_version_made(
    nats_server: RunningServer,
) -> None:
    manager = await connect(nats_server, "manager")
    w1 = await connect(nats_server, "worker", "w1")
    try:
        # The event stream as versions before the protection made it.
        await manager.jetstream().add_stream(
            StreamConfig(name=S.evt_stream, subjects=[S.all_events], allow_direct=True)
        )
        for _ in range(EVENTS):
            await w1.jetstream().publish(S.job_events("w1", "job"), b"{}")
        bus = await bus_connect(
            settings_from_paths([nats_server.url], nats_server.pki_dir, "manager"),
            reconnect=False,
        )
        try:
            await bus.ensure_streams()
        finally:
            await bus.close()
        info = await manager.jetstream().stream_info(S.evt_stream)
        assert info.config.deny_delete and info.config.deny_purge
        assert info.config.max_msg_size == MAX_MESSAGE_BYTES
        assert info.state.messages == EVENTS
    finally:
        await w1.close()
        await manager.close()


async def test_an_oversized_event_is_refused_by_the_stream(nats_server: RunningServer) -> None:
    admin = await _log_with_events(nats_server)
    w1 = await connect(nats_server, "worker", "w1")
    try:
        with pytest.raises(nats.js.errors.APIError, match="message size exceeds maximum"):
            await w1.jetstream().publish(S.job_events("w1", "job"), b"x" * (MAX_MESSAGE_BYTES + 1))
        assert (await _state(admin))[0] == EVENTS
    finally:
        await w1.close()
        await admin.close()
