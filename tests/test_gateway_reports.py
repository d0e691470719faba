"""An unmodified tunasync worker reporting through the gateway, against a real nats-server.

The requests are the ones tunasync's worker sends (registration with zero times, the startup
recovery read, a status report for every message of a run: pre-syncing, syncing, failed with
a retry, success with a size; the schedule list, ``null`` included; paused and disabled), and
the checks are what a user would look at: the answers, the status view, the run history and
``GET /jobs``.  The permission test shows the server, not the gateway, refusing a report for a
worker that has its own certificate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import RunningServer
from gateway_harness import (
    ZERO,
    OldWorker,
    bus_as,
    mirror_status,
    registration,
    running_gateway,
)

from mirrorbus.control import Control
from mirrorbus.errors import PermissionDenied
from mirrorbus.events import JobConfigured, Subjects, encode

pytestmark = pytest.mark.anyio
S = Subjects()


async def test_a_tunasync_worker_run_becomes_its_events(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    async with running_gateway(nats_server, tmp_path) as gw:
        status, body = await gw.call("POST", "/workers", registration("old1", "http://h1:6000/"))
        assert status == 200
        assert list(body) == ["id", "url", "token", "last_online", "last_register"]
        assert (body["id"], body["url"], body["token"]) == ("old1", "http://h1:6000/", "")
        assert body["last_register"] != ZERO and body["last_online"] == body["last_register"]

        # startup recovery: nothing known yet; an empty schedule list is null
        assert await gw.call("GET", "/workers/old1/jobs") == (200, [])
        assert await gw.call("POST", "/workers/old1/schedules", {"schedules": None}) == (200, {})

        # one run: pre-syncing, syncing, failed attempt, retry, success with a size
        path = "/workers/old1/jobs/debian"
        status, pre = await gw.call("POST", path, mirror_status("debian", "old1", "pre-syncing"))
        assert status == 200 and pre["status"] == "pre-syncing"
        assert pre["last_started"] != ZERO and pre["last_update"] == ZERO
        assert (await gw.call("POST", path, mirror_status("debian", "old1", "syncing")))[0] == 200
        failed = mirror_status("debian", "old1", "failed", error_msg="rsync exited with 23")
        status, body = await gw.call("POST", path, failed)
        assert (status, body["status"], body["error_msg"]) == (200, "failed", failed["error_msg"])
        assert body["last_ended"] != ZERO and body["last_update"] == ZERO
        assert (await gw.call("POST", path, mirror_status("debian", "old1", "syncing")))[0] == 200
        status, ok = await gw.call(
            "POST", path, mirror_status("debian", "old1", "success", size="1.2G")
        )
        assert (status, ok["status"], ok["size"]) == (200, "success", "1.2G")
        assert ok["last_update"] != ZERO and ok["last_started"] == pre["last_started"]
        assert list(ok) == [
            "name",
            "worker",
            "is_master",
            "status",
            "last_update",
            "last_started",
            "last_ended",
            "next_schedule",
            "upstream",
            "size",
            "error_msg",
        ]

        # the next report says "unknown" again (a worker restarted): the size stays known
        nxt = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        wire = nxt.astimezone().isoformat(timespec="seconds").replace("+00:00", "Z")
        wire = wire[:19] + ".123456789" + wire[19:]  # Go writes nanoseconds
        schedules = {"schedules": [{"name": "debian", "next_schedule": wire}]}
        assert await gw.call("POST", "/workers/old1/schedules", schedules) == (200, {})

        state = await gw.wait_job(
            "old1", "debian", lambda s: s.next_schedule is not None and s.size == "1.2G"
        )
        assert state.status == "success" and state.provider == "tunasync"
        assert state.next_schedule == nxt + timedelta(microseconds=123456)
        assert state.upstream == "rsync://upstream.example/debian/"
        runs = gw.view.history("old1", "debian")
        assert [(r.result, r.attempts, r.size, r.reason) for r in runs] == [
            ("success", 2, "1.2G", "tunasync")
        ]

        # stop/disable as the old worker reports them; the view shows them
        for job, reported in (("arch", "paused"), ("old", "disabled")):
            url = f"/workers/old1/jobs/{job}"
            assert (await gw.call("POST", url, mirror_status(job, "old1", reported)))[0] == 200
            await gw.wait_job("old1", job, lambda s, r=reported: s.status == r)  # type: ignore[misc]

        # GET /jobs: tunasync's 13 fields, the worker's jobs among everyone's
        status, jobs = await gw.call("GET", "/jobs")
        debian = next(j for j in jobs if j["name"] == "debian")
        assert len(debian) == 13 and debian["size"] == "1.2G"
        assert debian["next_schedule_ts"] == int(nxt.timestamp())
        status, mine = await gw.call("GET", "/workers/old1/jobs")
        assert sorted((j["name"], j["status"]) for j in mine) == [
            ("arch", "paused"),
            ("debian", "success"),
            ("old", "disabled"),
        ]
        status, workers = await gw.call("GET", "/workers")
        assert [(w["id"], w["url"], w["token"]) for w in workers] == [
            ("old1", "http://h1:6000/", "REDACTED")
        ]


async def test_bad_reports_are_refused_and_store_nothing(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    async with running_gateway(nats_server, tmp_path) as gw:
        report = mirror_status("debian", "nobody", "success")
        assert await gw.call("POST", "/workers/nobody/jobs/debian", report) == (
            400,
            {"error": "invalid workerID nobody"},
        )
        assert (await gw.call("POST", "/workers", registration("old1", "http://h1:6000/")))[
            0
        ] == 200
        no_name = mirror_status("", "old1", "success")
        assert await gw.call("POST", "/workers/old1/jobs/x", no_name) == (
            400,
            {"error": "mirror Name should not be empty"},
        )
        status, body = await gw.call("POST", "/workers/old1/jobs/x", raw=b'{"name": "x", ')
        assert status == 400 and "not JSON" in body["error"]
        status, body = await gw.call(
            "POST", "/workers/old1/jobs/x", mirror_status("x", "old1", "bogus")
        )
        assert status == 400 and "status" in body["error"]
        status, body = await gw.call("POST", "/workers", registration("old2", "ftp://h2/"))
        assert status == 400 and "not an http(s) URL" in body["error"]
        status, body = await gw.call(
            "POST", "/workers/old1/jobs/debian/size", {"name": "debian", "size": "3G"}
        )
        assert (status, body) == (500, {"error": "no mirror 'debian' exists in worker 'old1'"})
        assert await gw.call("GET", "/workers/old1/jobs") == (200, [])


async def test_reports_without_pre_syncing_leave_the_last_run_as_it_ended(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """A ``syncing`` or ``success`` with no run open (its ``pre-syncing`` lost, or a worker
    that skips it) is a run of its own: the finished run keeps its end and size, and
    ``last_started`` stays where tunasync keeps it (it moves on ``pre-syncing`` only)."""
    async with running_gateway(nats_server, tmp_path) as gw:
        assert (await gw.call("POST", "/workers", registration("old1", "http://h1:6000/")))[
            0
        ] == 200
        path = "/workers/old1/jobs/debian"
        for status in ("pre-syncing", "syncing"):
            assert (await gw.call("POST", path, mirror_status("debian", "old1", status)))[0] == 200
        done = mirror_status("debian", "old1", "success", size="5G")
        _, first = await gw.call("POST", path, done)
        await gw.wait_job("old1", "debian", lambda s: s.status == "success")
        (run,) = gw.view.history("old1", "debian")

        _, bare = await gw.call("POST", path, mirror_status("debian", "old1", "success"))
        assert bare["last_started"] == first["last_started"]
        assert bare["last_ended"] != first["last_ended"] and bare["size"] == "5G"
        _, syncing = await gw.call("POST", path, mirror_status("debian", "old1", "syncing"))
        assert syncing["last_started"] == first["last_started"]
        _, failed = await gw.call(
            "POST", path, mirror_status("debian", "old1", "failed", error_msg="timeout")
        )
        await gw.wait_job("old1", "debian", lambda s: s.status == "failed")

        runs = gw.view.history("old1", "debian")  # the newest first
        assert [(r.result, r.size) for r in runs] == [
            ("failed", ""),
            ("success", ""),
            ("success", "5G"),
        ]
        assert (runs[-1].run_id, runs[-1].ended_at) == (run.run_id, run.ended_at)
        assert failed["last_started"] == first["last_started"]


async def test_a_peer_outside_allow_gets_403(
    nats_server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_gateway(nats_server, tmp_path, allow=("10.0.0.0/8",)) as gw:
        status, body = await gw.call("GET", "/jobs")
        assert (status, body) == (403, {"error": "127.0.0.1 may not use this API"})
        assert "refused GET /jobs from 127.0.0.1 (not in [tunasync_api] allow)" in caplog.text
        status, _ = await gw.call("POST", "/workers", registration("old1", "http://h1:6000/"))
        assert status == 403
        assert await gw.gateway.fleet.old_workers() == {}


async def test_the_gateway_cannot_speak_for_a_worker_with_its_own_certificate(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """w1 has a worker certificate: the server refuses the gateway its subjects, directly and
    through the API, while a worker without one (old1) is accepted."""
    gateway = await bus_as(nats_server, "gateway")
    try:
        event = JobConfigured(id="x1", at=datetime.now(UTC), worker="w1", job="debian")
        async with running_gateway(nats_server, tmp_path) as gw:
            with pytest.raises(PermissionDenied):
                await gateway.append(S.job_events("w1", "debian"), encode(event), event.id)
            with pytest.raises(PermissionDenied):
                await gateway.append(S.worker_events("w1"), encode(event), "x2")
            status, body = await gw.call("POST", "/workers", registration("w1", "http://h:1/"))
            assert status == 500
            assert body["error"].startswith(
                "failed to register worker: worker w1 has a mirrorbus certificate"
            )
            ok = JobConfigured(id="x3", at=datetime.now(UTC), worker="old1", job="debian")
            assert await gateway.append(S.job_events("old1", "debian"), encode(ok), ok.id) > 0

            # once old1 gets a certificate (and the users are rendered again), it is refused too
            nats_server.add_worker("old1")
            again = JobConfigured(id="x4", at=datetime.now(UTC), worker="old1", job="debian")
            with pytest.raises(PermissionDenied):
                await gateway.append(S.job_events("old1", "debian"), encode(again), again.id)
            assert gw.view.jobs("w1") == []
    finally:
        await gateway.close()


async def test_two_gateways_know_the_same_old_workers(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """Two managers (replicas with views of their own), each with a gateway: an old worker
    registered through one is known to the other (from its view, i.e. the log), and a
    command for it is forwarded once, by one of them."""
    old = OldWorker(jobs={"debian"})
    admin = await bus_as(nats_server, "admin")
    try:
        async with (
            old.serving(),
            running_gateway(nats_server, tmp_path / "a", name="a") as a,
            running_gateway(nats_server, tmp_path / "b", name="b") as b,
        ):
            assert (await a.call("POST", "/workers", registration("old1", old.url)))[0] == 200
            report = mirror_status("debian", "old1", "success")
            assert (await a.call("POST", "/workers/old1/jobs/debian", report))[0] == 200
            await b.wait_job("old1", "debian", lambda s: s.status == "success")
            _, workers = await b.call("GET", "/workers")
            assert [(w["id"], w["url"]) for w in workers] == [("old1", old.url)]
            for n in range(1, 4):
                assert (await Control(admin).command("ping", "old1", "debian")).accepted
                assert len(old.requests) == n
    finally:
        await admin.close()


async def test_reports_right_after_a_flush_continue_the_same_run(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """A flush makes the gateway read its copy of the jobs from the view again (once the view
    holds its own last report): the next report still continues the run it began."""
    async with running_gateway(nats_server, tmp_path) as gw:
        assert (await gw.call("POST", "/workers", registration("old1", "http://h:1/")))[0] == 200
        path = "/workers/old1/jobs/debian"
        for _ in range(3):
            pre = mirror_status("debian", "old1", "pre-syncing")
            assert (await gw.call("POST", path, pre))[0] == 200
            assert await gw.call("DELETE", "/jobs/disabled") == (200, {"message": "flushed"})
            status, body = await gw.call("POST", path, mirror_status("debian", "old1", "syncing"))
            assert (status, body["status"]) == (200, "syncing")
            ok = mirror_status("debian", "old1", "success")
            assert (await gw.call("POST", path, ok))[0] == 200
        await gw.wait_job("old1", "debian", lambda s: s.status == "success")
        runs = gw.view.history("old1", "debian")
        assert [(r.result, r.attempts) for r in runs] == [("success", 1)] * 3
