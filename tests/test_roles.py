"""Each role's denials, proven against the real server (the control-plane issue's roles).

admin: commands and queries, and only the operators' own events (rm-worker, flush); reader:
queries, logs and watching only; worker: its own events, commands and log requests only;
manager: reads events and answers queries, publishes nothing else.  A denial is a
"permissions violation" from the server, and nothing lands in any stream.
"""

from __future__ import annotations

import anyio
import pytest
from conftest import RunningServer, connect, permission_violations
from test_permissions import _assert_denied, _count, _streams

from mirrorbus.events.subjects import Subjects

pytestmark = pytest.mark.anyio
S = Subjects()


async def _wait_denied(errors: list[Exception], subject: str, within: float = 5.0) -> None:
    """Assert that the server refused ``subject``, waiting up to ``within`` s for its "permissions
    violation" (the -ERR arrives asynchronously)."""

    def refused() -> bool:
        return any(subject.lower() in v.lower() for v in permission_violations(errors))

    with anyio.move_on_after(within):
        while not refused():  # noqa: ASYNC110 - filled by the client's error callback
            await anyio.sleep(0.02)
    _assert_denied(errors, subject)


async def _denied(server: RunningServer, role: str, name: str | None, subjects: list[str]) -> None:
    errors: list[Exception] = []
    nc = await connect(server, role, name, errors=errors)
    try:
        for subject in subjects:
            await nc.publish(subject, b"{}")
            await nc.flush(timeout=2)
            await _wait_denied(errors, subject)
    finally:
        await nc.close()


async def test_admin_may_not_forge_worker_events(nats_server: RunningServer) -> None:
    admin = await _streams(nats_server)
    try:
        await _denied(
            nats_server,
            "admin",
            None,
            [
                S.job_events("w1", "job"),
                S.worker_events("w1"),
                # The bare operators' subject is the gateway's: an operator's own events
                # go on its own token, which names who wrote them.
                S.admin_events,
                S.snapshot("w1"),
                S.heartbeat("w1"),
            ],
        )
        assert await _count(admin, S.evt_stream, S.all_events) == 0
        # ... but may append its own operator events (evt.-admin.admin).
        ack = await admin.jetstream().publish(S.operator_events("admin"), b"{}")
        assert ack.seq == 1
    finally:
        await admin.close()


async def test_reader_may_not_command_nor_append(nats_server: RunningServer) -> None:
    admin = await _streams(nats_server)
    try:
        await _denied(
            nats_server,
            "reader",
            None,
            [
                S.job_command("w1", "job"),
                S.worker_command("w1"),
                S.admin_events,
                S.job_events("w1", "job"),
                S.snapshot("w1"),
            ],
        )
        assert await _count(admin, S.evt_stream, S.all_events) == 0
        assert await _count(admin, S.cmd_stream, S.all_commands) == 0
    finally:
        await admin.close()


async def test_worker_may_not_act_for_others(nats_server: RunningServer) -> None:
    admin = await _streams(nats_server)
    try:
        await _denied(
            nats_server,
            "worker",
            "w1",
            [
                S.job_events("w2", "job"),
                S.worker_events("w2"),
                S.admin_events,
                S.job_command("w1", "job"),
                S.worker_command("w1"),
                S.logs("w2"),
                S.heartbeat("w2"),
                S.snapshot("w2"),
            ],
        )
        errors: list[Exception] = []
        w1 = await connect(nats_server, "worker", "w1", errors=errors)
        try:
            await w1.subscribe(S.logs("w2"))  # may not answer w2's log requests
            await w1.flush(timeout=2)
            await _wait_denied(errors, S.logs("w2"))
        finally:
            await w1.close()
        assert await _count(admin, S.evt_stream, S.all_events) == 0
    finally:
        await admin.close()


async def test_manager_reads_and_answers_but_publishes_nothing(
    nats_server: RunningServer,
) -> None:
    admin = await _streams(nats_server)
    try:
        await _denied(
            nats_server,
            "manager",
            None,
            [
                S.job_command("w1", "job"),
                S.job_events("w1", "job"),
                S.admin_events,
                S.logs("w1"),
            ],
        )
        assert await _count(admin, S.evt_stream, S.all_events) == 0
        assert await _count(admin, S.cmd_stream, S.all_commands) == 0
    finally:
        await admin.close()
