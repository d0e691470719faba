"""Moving a site off tunasync keeps its history, one host at a time or all at once.

One host: an old worker reports through the gateway, then ``mirrorbus worker`` of the same
name takes over (its certificate issued, the users rendered again) and restores from what the
gateway appended: last success, size, paused and disabled carry over, and a job that succeeded
within its interval does not run again.  All at once: ``mirrorbus import tunasync`` reads a
saved ``GET /jobs`` of a tunasync manager, and the first ``GET /jobs`` of mirrorbus after it is
the same, byte for byte.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from conftest import RunningServer
from e2e import PYTHON, Site, wait_for
from gateway_harness import mirror_status, registration, running_gateway
from test_e2e_worker import COUNTING_JOB

from mirrorbus.host.server import free_port
from projections.tunasync import go_json

T0 = datetime(2024, 3, 1, 2, 0, 0, tzinfo=UTC)


def _runs(site: Site, job: str) -> int:
    path = site.workdir("old1", job) / "runs"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.anyio
async def test_a_native_worker_takes_over_what_the_old_one_reported(
    site: Site, nats_server: RunningServer, tmp_path: Path
) -> None:
    async with running_gateway(nats_server, tmp_path) as gw:
        assert (await gw.call("POST", "/workers", registration("old1", "http://h:6000/")))[0] == 200
        nxt = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        for job, status, size in (
            ("recent", "success", "2G"),
            ("nosched", "success", "3G"),
            ("paused", "paused", "4G"),
            ("off", "disabled", "unknown"),
            ("due", "failed", "unknown"),
        ):
            path = f"/workers/old1/jobs/{job}"
            if status in ("success", "failed"):
                pre = mirror_status(job, "old1", "pre-syncing")
                assert (await gw.call("POST", path, pre))[0] == 200
            report = mirror_status(job, "old1", status, size=size)
            assert (await gw.call("POST", path, report))[0] == 200
        schedule = {"schedules": [{"name": "recent", "next_schedule": nxt.isoformat()}]}
        assert await gw.call("POST", "/workers/old1/schedules", schedule) == (200, {})
        before = await gw.wait_job("old1", "recent", lambda s: s.next_schedule == nxt)

        # the host switches: a certificate for old1, then mirrorbus worker old1
        nats_server.add_worker("old1")
        jobs = "".join(
            COUNTING_JOB.format(name=j, interval=120)  # minutes
            for j in ("recent", "nosched", "paused", "off", "due")
        )
        site.start_worker(site.worker_config("old1", jobs))

        due = await gw.wait_job("old1", "due", lambda s: s.status == "success", timeout=30)
        assert due.size == "1.5K" and _runs(site, "due") == 1
        recent = await gw.wait_job("old1", "recent", lambda s: s.provider == "command")
        assert (recent.status, recent.size, recent.last_update) == (
            "success",
            "2G",
            before.last_update,
        )
        assert recent.next_schedule == nxt
        nosched = await gw.wait_job("old1", "nosched", lambda s: s.provider == "command")
        assert nosched.next_schedule is not None and nosched.last_update is not None
        assert nosched.next_schedule == nosched.last_update + timedelta(hours=2)
        assert (nosched.status, nosched.size) == ("success", "3G")
        paused = await gw.wait_job("old1", "paused", lambda s: s.provider == "command")
        off = await gw.wait_job("old1", "off", lambda s: s.provider == "command")
        assert (paused.status, paused.size, off.status) == ("paused", "4G", "disabled")
        assert [_runs(site, j) for j in ("recent", "nosched", "paused", "off")] == [0, 0, 0, 0]

        # the gateway no longer speaks for old1, and may not
        await anyio.to_thread.run_sync(
            lambda: wait_for(
                lambda: [w.url for w in gw.view.workers() if w.name == "old1"] == [""],
                10,
                "old1 native in the view",
            )
        )
        assert await gw.gateway.fleet.old_worker("old1") is None
        status, body = await gw.call(
            "POST", "/workers/old1/jobs/recent", mirror_status("recent", "old1", "failed")
        )
        assert status == 500 and "has a mirrorbus certificate" in body["error"]


def _tunasync_jobs() -> list[dict[str, object]]:
    """What a tunasync manager in +0800 serves on GET /jobs for one worker's six jobs."""

    def t(value: datetime | None) -> tuple[str, int]:
        if value is None:
            return "0001-01-01 00:00:00 +0000", -62135596800
        local = value.astimezone(UTC).astimezone(
            datetime.now().astimezone().tzinfo  # the test runs with TZ=Asia/Shanghai
        )
        return local.strftime("%Y-%m-%d %H:%M:%S %z"), int(value.timestamp())

    h = timedelta(hours=1)
    rows = [
        # name, status, last_update, last_started, last_ended, next, size, master
        ("a-ok", "success", T0, T0 - h / 12, T0, T0 + h, "1.2G", True),
        ("b-bad", "failed", T0, T0 + 2 * h, T0 + 3 * h, T0 + 4 * h, "300M", True),
        ("c-paused", "paused", T0, T0 + 5 * h, T0, None, "5G", False),
        ("d-off", "disabled", None, None, None, None, "unknown", True),
        ("e-new", "none", None, None, None, T0 + 6 * h, "unknown", True),
        ("f-sync", "syncing", T0, T0 + 7 * h, T0, None, "2T", True),
    ]
    items = []
    for name, status, lu, ls, le, ns, size, master in rows:
        item: dict[str, object] = {"name": name, "is_master": master, "status": status}
        for key, value in (
            ("last_update", lu),
            ("last_started", ls),
            ("last_ended", le),
            ("next_schedule", ns),
        ):
            item[key], item[f"{key}_ts"] = t(value)
        item["upstream"] = f"rsync://example.org/{name}/?a=1&b=<2>"
        item["size"] = size
        items.append(item)
    return items


def test_import_of_a_saved_tunasync_jobs(
    site: Site, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    import time

    time.tzset()
    try:
        saved = tmp_path / "jobs.json"
        body = go_json(_tunasync_jobs())
        saved.write_bytes(body)
        listen = f"127.0.0.1:{free_port()}"
        site._spawn(
            "manager", [*PYTHON, "manager", "--state-dir", str(site.root), "--http", listen]
        )

        wait_for(lambda: site.ctl("list", "--all").returncode == 0, 30, "the manager's streams")
        no_worker = site.cli("import", "tunasync", str(saved), "--state-dir", str(site.root))
        assert no_worker.returncode == 2
        assert no_worker.stderr == (
            f"mirrorbus import tunasync: error: {saved}: job 'a-ok' names no worker "
            "(GET /jobs does not): pass --worker NAME\n"
        )
        out = site.cli(
            "import", "tunasync", str(saved), "--worker", "old1", "--state-dir", str(site.root)
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == (
            "old1: 6 job(s) imported (1 disabled, 1 failed, 1 none, 1 paused, 1 success, 1 syncing)"
        )

        def jobs() -> bytes | None:
            try:
                with urllib.request.urlopen(f"http://{listen}/jobs", timeout=2) as r:
                    data: bytes = r.read()
            except OSError:
                return None
            return data if len(json.loads(data)) == 6 else None

        assert wait_for(jobs, 20, "/jobs with the imported jobs") == body

        # a worker with a certificate of its own cannot be written by the gateway
        refused = site.cli(
            "import", "tunasync", str(saved), "--worker", "w1", "--state-dir", str(site.root)
        )
        assert refused.returncode == 3
        assert "worker w1: it has a mirrorbus certificate of its own" in refused.stderr
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.anyio
async def test_import_from_a_running_tunasync_manager(site: Site) -> None:
    """The manager's base URL: every worker of GET /workers, each through
    GET /workers/<id>/jobs (MirrorStatus: worker names and RFC 3339 times with nanoseconds);
    a worker without jobs answers null, as tunasync does."""
    from aiohttp import web

    jobs = {
        "w-a": [
            {
                "name": "debian",
                "worker": "w-a",
                "is_master": True,
                "status": "success",
                "last_update": "2024-03-01T10:00:00.123456789+08:00",
                "last_started": "2024-03-01T09:55:00.5+08:00",
                "last_ended": "2024-03-01T10:00:00.123456789+08:00",
                "next_schedule": "2024-03-01T11:00:00+08:00",
                "upstream": "rsync://example.org/debian/",
                "size": "9.1T",
                "error_msg": "",
            },
            {
                "name": "arch",
                "worker": "w-a",
                "is_master": False,
                "status": "disabled",
                "last_update": "0001-01-01T00:00:00Z",
                "last_started": "0001-01-01T00:00:00Z",
                "last_ended": "0001-01-01T00:00:00Z",
                "next_schedule": "0001-01-01T00:00:00Z",
                "upstream": "rsync://example.org/arch/",
                "size": "unknown",
                "error_msg": "",
            },
        ],
        "w-b": None,
    }
    app = web.Application()
    workers = [{"id": w, "url": "http://x/", "token": "REDACTED"} for w in jobs]

    async def list_workers(_request: web.Request) -> web.Response:
        return web.json_response(workers)

    async def worker_jobs(request: web.Request) -> web.Response:
        return web.json_response(jobs[request.match_info["id"]])

    app.router.add_get("/workers", list_workers)
    app.router.add_get("/workers/{id}/jobs", worker_jobs)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        site.start_manager()
        await anyio.to_thread.run_sync(  # the manager has made the streams
            lambda: wait_for(lambda: site.ctl("list", "--all").returncode == 0, 30, "manager")
        )
        out = await anyio.to_thread.run_sync(
            lambda: site.cli(
                "import", "tunasync", f"http://127.0.0.1:{port}", "--state-dir", str(site.root)
            )
        )
    finally:
        await runner.cleanup()
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "w-a: 2 job(s) imported (1 disabled, 1 success)",
        f"2 job(s), 6 event(s) recorded from http://127.0.0.1:{port}",
    ]
    debian = await anyio.to_thread.run_sync(
        lambda: site.wait_job("w-a", "debian", lambda s: s.next_schedule is not None)
    )
    assert debian.last_update == datetime(2024, 3, 1, 2, 0, 0, 123456, tzinfo=UTC)
    assert debian.last_started == datetime(2024, 3, 1, 1, 55, 0, 500000, tzinfo=UTC)
    assert debian.next_schedule == datetime(2024, 3, 1, 3, 0, 0, tzinfo=UTC)
    assert (debian.status, debian.size, debian.provider) == ("success", "9.1T", "tunasync")
    arch = site.wait_job("w-a", "arch", lambda s: s.status == "disabled")
    assert (arch.is_master, arch.last_update, arch.size) == (False, None, "")
