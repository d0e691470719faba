"""The bus contract's authority, enforced by a real nats-server with mutual TLS.

Every denial is checked the way it shows up in production: the refused operation times out,
a "permissions violation" arrives through ``error_cb``, and nothing lands in a stream.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path

import anyio
import nats
import nats.errors
import nats.js.errors
import pytest
from conftest import RunningServer, connect, permission_violations
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from mirrorbus import bus
from mirrorbus.bus import ensure_command_consumer
from mirrorbus.bus.logread import LogReader
from mirrorbus.events.subjects import Subjects
from mirrorbus.host import pki

pytestmark = pytest.mark.anyio

S = Subjects()
DENIED = 0.3  # seconds to wait for an answer that a denial never gives


async def _streams(server: RunningServer) -> Client:
    """Create EVT, CMD and SNAP as the manager does at its start; return an admin connection."""
    manager = await bus.connect(
        bus.settings_from_paths([server.url], server.pki_dir, "manager"), reconnect=False
    )
    try:
        await manager.ensure_streams()
    finally:
        await manager.close()
    return await connect(server, "admin")


async def _make_command_consumer(server: RunningServer, worker: str) -> None:
    """What the manager does once it knows ``worker``: make its command consumer."""
    manager = await bus.connect(
        bus.settings_from_paths([server.url], server.pki_dir, "manager"), reconnect=False
    )
    try:
        await ensure_command_consumer(manager, worker)
    finally:
        await manager.close()


async def _count(admin: Client, stream: str, subject: str) -> int:
    info = await admin.jetstream().stream_info(stream, subjects_filter=subject)
    return sum((info.state.subjects or {}).values())


def _assert_denied(errors: list[Exception], subject: str) -> None:
    # nats-py lower-cases the server's -ERR text, so "$JS.API..." arrives as "$js.api...".
    violations = [v.lower() for v in permission_violations(errors)]
    assert any(subject.lower() in v for v in violations), f"no violation for {subject}: {errors}"


async def _logged(server: RunningServer, text: str, within: float = 2.0) -> bool:
    """Whether the server's log says ``text`` within ``within`` s (it logs asynchronously)."""
    with anyio.move_on_after(within):
        # Polling is the only way to watch a file another process writes.
        while text not in server.server.log_file.read_text():  # noqa: ASYNC110
            await anyio.sleep(0.02)
        return True
    return False


async def test_plaintext_client_is_refused(nats_server: RunningServer) -> None:
    # Speak the protocol in the clear, as a client without TLS would.
    with socket.create_connection(("127.0.0.1", nats_server.port), timeout=5) as s:
        info = s.recv(4096)
        assert info.startswith(b"INFO ")
        assert json.loads(info[5:])["tls_required"] is True
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        answer = b""
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert b"PONG" not in answer  # closed (or sent garbage TLS alerts), never served


async def test_nats_py_without_client_cert_is_refused(nats_server: RunningServer) -> None:
    ctx = ssl.create_default_context(cafile=str(nats_server.pki_dir / "ca.crt"))
    with pytest.raises((nats.errors.Error, OSError, ssl.SSLError)):
        await connect(nats_server, "admin", tls=ctx)  # usually "connection reset"
    assert await _logged(nats_server, "client didn't provide a certificate")


async def test_cert_from_another_ca_is_refused(nats_server: RunningServer, tmp_path: Path) -> None:
    other = tmp_path / "other-pki"
    pki.init_ca(other)
    pki.issue(other, "admin")  # same subject as our admin, wrong issuer
    ctx = ssl.create_default_context(cafile=str(nats_server.pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(other / "admin.crt"), str(other / "admin.key"))
    # The client sees the server's "unknown CA" alert, or (TLS 1.3 race) a reset connection;
    # the server's log says exactly why it refused.
    with pytest.raises((ssl.SSLError, OSError, nats.errors.Error)):
        await connect(nats_server, "admin", tls=ctx)
    assert await _logged(nats_server, "certificate signed by unknown authority")


async def test_cert_mapping_to_no_user_is_refused(nats_server: RunningServer) -> None:
    # w3 has a certificate from our CA but is not among the server's users.
    pki.issue(nats_server.pki_dir, "worker", "w3")
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await connect(nats_server, "worker", "w3")
    assert await _logged(nats_server, "authentication error")


async def test_worker_appends_replays_and_consumes_its_own(nats_server: RunningServer) -> None:
    admin = await _streams(nats_server)
    errors: list[Exception] = []
    w1 = await connect(nats_server, "worker", "w1", errors=errors)
    try:
        js = w1.jetstream()
        ack = await js.publish(S.job_events("w1", "job"), b"e1", headers={"Nats-Msg-Id": "id-1"})
        assert ack.stream == S.evt_stream
        await js.publish(S.worker_events("w1"), b"worker-started")
        assert (await js.stream_info(S.evt_stream)).state.messages == 2

        # Replay: the log read by sequence, filtered to its job events (no consumer).
        await _make_command_consumer(nats_server, "w1")
        w1_bus = await bus.connect(
            bus.settings_from_paths(
                [nats_server.url],
                nats_server.pki_dir,
                "worker-w1",
                inbox_prefix=S.worker_inbox("w1"),
            ),
            reconnect=False,
        )
        try:
            async with LogReader(
                w1_bus, S.evt_stream, subject=S.worker_job_events("w1")
            ) as log_reader:
                got = await log_reader.read(1)
            assert [m.data for m in got.messages] == [b"e1"]
        finally:
            await w1_bus.close()

        # Snapshot: written by itself, read back with a direct get.
        await js.publish(S.snapshot("w1"), b"snap-1")
        await js.publish(S.snapshot("w1"), b"snap-2")
        last = await js.get_last_msg(S.snap_stream, S.snapshot("w1"), direct=True)
        assert last.data == b"snap-2"

        # Commands: the admin sends one; w1 consumes it through its durable consumer, which
        # the manager made.
        await w1.publish(S.heartbeat("w1"), b"beat")
        await admin.jetstream().publish(S.issued_by(S.job_command("w1", "job"), "admin"), b"start")
        commands = await js.pull_subscribe_bind(S.worker_consumer("w1"), stream=S.cmd_stream)
        msgs = await commands.fetch(1, timeout=2)
        assert [m.data for m in msgs] == [b"start"]
        await msgs[0].ack_sync()
        info = await js.consumer_info(S.cmd_stream, S.worker_consumer("w1"))
        assert info.num_ack_pending == 0
        await w1.flush()
        assert errors == []  # not one of these steps touched a forbidden subject
    finally:
        await w1.close()
        await admin.close()


async def test_worker_cannot_act_for_others(nats_server: RunningServer) -> None:
    admin = await _streams(nats_server)
    errors: list[Exception] = []
    w1 = await connect(nats_server, "worker", "w1", errors=errors)
    try:
        js = w1.jetstream()
        for subject in (S.job_events("w2", "job"), S.job_command("w1", "job"), S.snapshot("w2")):
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(subject, b"forged", timeout=DENIED)
            _assert_denied(errors, subject)
        assert await _count(admin, S.evt_stream, S.all_events) == 0
        assert await _count(admin, S.cmd_stream, S.all_commands) == 0
        assert await _count(admin, S.snap_stream, S.all_snapshots) == 0

        # w2's commands: neither a consumer on them, nor pulling from w2's consumer,
        # nor a plain subscription; and no consumer at all, not even on its own commands.
        await _make_command_consumer(nats_server, "w2")
        await admin.jetstream().publish(
            S.issued_by(S.job_command("w2", "job"), "admin"), b"for w2 only"
        )
        for name, filter_subject in (
            ("w2", S.worker_commands("w2")),
            ("w1", S.all_commands),
            ("w1", S.worker_commands("w1")),
        ):
            with pytest.raises(nats.errors.TimeoutError):
                await js.add_consumer(
                    S.cmd_stream,
                    ConsumerConfig(name=name, filter_subject=filter_subject),
                    timeout=DENIED,
                )
            _assert_denied(errors, f"$JS.API.CONSUMER.CREATE.{S.cmd_stream}.{name}.")
        stolen = await js.pull_subscribe_bind("w2", stream=S.cmd_stream)
        with pytest.raises(nats.errors.TimeoutError):
            await stolen.fetch(1, timeout=DENIED)
        _assert_denied(errors, f"$JS.API.CONSUMER.MSG.NEXT.{S.cmd_stream}.w2")
        manager = await connect(nats_server, "manager")
        try:
            info = await manager.jetstream().consumer_info(S.cmd_stream, "w2")
        finally:
            await manager.close()
        assert info.num_pending == 1 and info.delivered.stream_seq == 0

        await w1.subscribe(S.worker_commands("w2"))
        await w1.subscribe("_INBOX.>")  # other clients' replies
        await w1.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await w1.request("nowhere", b"", timeout=0.2)  # lets the -ERRs arrive
        _assert_denied(errors, f'subscription to "{S.worker_commands("w2")}"')
        _assert_denied(errors, 'subscription to "_INBOX.>"')
    finally:
        await w1.close()
        await admin.close()


async def test_admin_sends_commands_but_never_events(nats_server: RunningServer) -> None:
    admin = await _streams(nats_server)
    errors: list[Exception] = []
    forger = await connect(nats_server, "admin", errors=errors)
    try:
        ack = await admin.jetstream().publish(
            S.issued_by(S.job_command("w1", "debian"), "admin"), b"start"
        )
        assert ack.stream == S.cmd_stream
        with pytest.raises(nats.errors.TimeoutError):
            await forger.jetstream().publish(S.job_events("w1", "debian"), b"x", timeout=DENIED)
        _assert_denied(errors, S.job_events("w1", "debian"))
        assert await _count(admin, S.evt_stream, S.all_events) == 0
    finally:
        await forger.close()
        await admin.close()


async def test_reader_reads_but_cannot_publish(nats_server: RunningServer) -> None:
    admin = await _streams(nats_server)
    w1 = await connect(nats_server, "worker", "w1")
    errors: list[Exception] = []
    reader = await connect(nats_server, "reader", errors=errors)
    try:
        await w1.jetstream().publish(S.job_events("w1", "job"), b"e1")
        js = reader.jetstream()
        for subject in (S.job_command("w1", "job"), S.job_events("w1", "job")):
            with pytest.raises(nats.errors.TimeoutError):
                await js.publish(subject, b"x", timeout=DENIED)
            _assert_denied(errors, subject)
        assert await _count(admin, S.cmd_stream, S.all_commands) == 0
        assert await _count(admin, S.evt_stream, S.all_events) == 1

        # It may read events by sequence, but make no consumer.
        reader_bus = await bus.connect(
            bus.settings_from_paths([nats_server.url], nats_server.pki_dir, "reader"),
            reconnect=False,
        )
        try:
            async with LogReader(reader_bus, S.evt_stream) as log_reader:
                got = await log_reader.read(1)
            assert [m.data for m in got.messages] == [b"e1"]
        finally:
            await reader_bus.close()
        with pytest.raises(nats.errors.TimeoutError):
            await reader.jetstream(timeout=DENIED).add_consumer(
                S.evt_stream, ConsumerConfig(name="reader", filter_subject=S.all_events)
            )
        _assert_denied(errors, f"$JS.API.CONSUMER.CREATE.{S.evt_stream}.reader.")
    finally:
        await reader.close()
        await w1.close()
        await admin.close()


async def test_manager_answers_queries(nats_server: RunningServer) -> None:
    errors: list[Exception] = []
    manager = await connect(nats_server, "manager", errors=errors)
    reader = await connect(nats_server, "reader")
    try:

        async def pong(msg: Msg) -> None:
            await msg.respond(b"pong")

        await manager.subscribe(S.api("ping"), cb=pong)
        await manager.flush()
        # The manager's subscription was once not yet seen by the server when the reader's
        # request arrived, though the flush had returned ("no responders", in one run of
        # the whole suite): ask again for up to 2 s.  A refused subscription still fails.
        with anyio.fail_after(2):
            while True:
                try:
                    answer = await reader.request(S.api("ping"), b"", timeout=2)
                    break
                except nats.errors.NoRespondersError:
                    await anyio.sleep(0.05)
        assert answer.data == b"pong"

        # allow_responses is for replies only: the manager cannot publish events.
        await manager.publish(S.job_events("w1", "job"), b"x")
        with pytest.raises(nats.errors.TimeoutError):
            await manager.request("nowhere", b"", timeout=0.2)
        _assert_denied(errors, S.job_events("w1", "job"))
    finally:
        await reader.close()
        await manager.close()
