"""``tunasynctl`` unchanged against ``mirrorbus manager --tunasync-api``, end to end.

Real processes: nats-server, ``mirrorbus manager --state-dir S --tunasync-api ADDR`` and a
native ``mirrorbus worker`` (w1); an aiohttp stand-in for an old tunasync worker (old1).  Each
request is the one ``tunasynctl`` sends for its verb (method, path, body, ``Content-Type``),
and each answer is checked the way ``tunasynctl`` checks it (status 200, the message, the
returned size).  ``/cmd`` reaches the native worker through the command stream and the old
one through its URL; both are recorded with issuer ``tunasync-api <peer>``.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from e2e import PYTHON, Site, wait_for
from gateway_harness import OldWorker, mirror_status, registration
from sqlalchemy import text
from test_e2e_worker import COUNTING_JOB

from mirrorbus.host.server import free_port

pytestmark = pytest.mark.anyio
JSON = "application/json; charset=utf-8"


def ctl_cmd(cmd: str, worker: str, mirror: str = "", force: bool = False) -> dict[str, Any]:
    """tunasynctl's ClientCmd for a job verb (``reload``: no mirror, null options)."""
    if cmd == "reload":
        return {
            "cmd": "reload",
            "worker_id": worker,
            "mirror_id": "",
            "args": None,
            "options": None,
        }
    options = {"force": True} if force else {}
    return {"cmd": cmd, "mirror_id": mirror, "worker_id": worker, "args": None, "options": options}


async def test_tunasynctl_requests(site: Site, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{free_port()}"
    status_http = f"127.0.0.1:{free_port()}"
    base = f"http://{listen}"
    config = site.worker_config("w1", COUNTING_JOB.format(name="job", interval=3600))
    manager = [*PYTHON, "manager", "--state-dir", str(site.root), "-v"]
    site._spawn("manager", [*manager, "--tunasync-api", listen, "--http", status_http])
    site.start_worker(config)
    old = OldWorker(jobs={"debian"})

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": JSON} if data else {}
        async with http.request(method, base + path, data=data, headers=headers) as r:
            raw = await r.read()
            return r.status, (json.loads(raw) if raw else None)

    async def until(probe: Any, what: str) -> Any:
        return await anyio.to_thread.run_sync(lambda: wait_for(probe, 30, what))

    async with aiohttp.ClientSession() as http, old.serving():

        def pong() -> bool:
            try:
                with urllib.request.urlopen(base + "/ping", timeout=2) as r:
                    return bool(json.loads(r.read()) == {"message": "pong"})
            except OSError:
                return False

        await until(pong, "the tunasync API")
        await until(lambda: (j := site.job("w1", "job")) and j.status == "success", "w1/job")

        # an old worker registers and reports
        assert (await call("POST", "/workers", registration("old1", old.url)))[0] == 200
        report = mirror_status("debian", "old1", "success", size="3G")
        assert (await call("POST", "/workers/old1/jobs/debian", report))[0] == 200

        # list -w w1 / list -w old1 / list --all / workers
        status, jobs = await call("GET", "/workers/w1/jobs")
        assert status == 200 and [(j["name"], j["worker"], j["size"]) for j in jobs] == [
            ("job", "w1", "1.5K")
        ]
        await until(lambda: site.job("old1", "debian"), "old1/debian in the view")
        status, jobs = await call("GET", "/workers/old1/jobs")
        assert [(j["name"], j["status"], j["size"]) for j in jobs] == [("debian", "success", "3G")]
        status, every = await call("GET", "/jobs")
        assert sorted(j["name"] for j in every) == ["debian", "job"]
        assert all(len(j) == 13 for j in every)
        status, workers = await call("GET", "/workers")
        assert sorted((w["id"], w["url"]) for w in workers) == [("old1", old.url), ("w1", "")]

        # old and new alike for mirrorbus's own tools: ctl list, history, metrics
        listed = site.ctl("list", "--all", "--json")
        assert sorted((j["name"], j["status"]) for j in json.loads(listed.stdout)) == [
            ("debian", "success"),
            ("job", "success"),
        ]
        history = json.loads(site.ctl("history", "-w", "old1", "debian", "--json").stdout)
        assert [(r["result"], r["size"]) for r in history] == [("success", "3G")]
        async with http.get(f"http://{status_http}/metrics") as r:
            metrics = await r.text()
        sizes = [line for line in metrics.splitlines() if line.startswith("mirrorbus_job_size")]
        assert any('worker="old1"' in line and line.endswith(" 3.221225472e+09") for line in sizes)

        # the command family, to the native worker through the bus
        ok = {"message": "successfully send command to worker w1"}
        assert await call("POST", "/cmd", ctl_cmd("ping", "w1", "job")) == (200, ok)
        assert await call("POST", "/cmd", ctl_cmd("stop", "w1", "job")) == (200, ok)
        await until(lambda: site.job("w1", "job").status == "paused", "paused")  # type: ignore[union-attr]
        assert await call("POST", "/cmd", ctl_cmd("start", "w1", "job", force=True)) == (200, ok)
        assert await call("POST", "/cmd", ctl_cmd("restart", "w1", "job")) == (200, ok)
        assert await call("POST", "/cmd", ctl_cmd("reload", "w1")) == (200, ok)
        assert await call("POST", "/cmd", ctl_cmd("disable", "w1", "job")) == (200, ok)
        await until(lambda: site.job("w1", "job").status == "disabled", "disabled")  # type: ignore[union-attr]
        status, body = await call("POST", "/cmd", ctl_cmd("stop", "w1", "job"))
        assert status == 500 and "job is disabled" in body["error"]

        # ... and to the old worker through its URL
        old_ok = {"message": "successfully send command to worker old1"}
        assert await call("POST", "/cmd", ctl_cmd("start", "old1", "debian")) == (200, old_ok)
        assert old.requests[-1] == (
            JSON,
            b'{"cmd":"start","mirror_id":"debian","args":null,"options":{}}',
        )
        with_args = {**ctl_cmd("restart", "old1", "debian"), "args": ["a", "b"]}
        assert await call("POST", "/cmd", with_args) == (200, old_ok)
        assert old.requests[-1][1] == (
            b'{"cmd":"restart","mirror_id":"debian","args":["a","b"],"options":{}}'
        )

        # set-size: the returned size is what tunasynctl compares
        for worker, job in (("w1", "job"), ("old1", "debian")):
            path = f"/workers/{worker}/jobs/{job}/size"
            status, body = await call("POST", path, {"name": job, "size": "42G"})
            assert (status, body["name"], body["size"]) == (200, job, "42G")
            await until(lambda w=worker, j=job: site.job(w, j).size == "42G", "size")  # type: ignore[misc, union-attr]

        # errors as tunasync gives them
        assert await call("POST", "/cmd", ctl_cmd("start", "nosuch", "job")) == (
            400,
            {"error": "worker nosuch is not registered yet"},
        )
        assert await call("POST", "/cmd", ctl_cmd("start", "", "job")) == (500, None)
        status, body = await call("POST", "/cmd", ctl_cmd("frobnicate", "w1", "job"))
        assert status == 400 and "unknown command 'frobnicate'" in body["error"]
        assert await call("DELETE", "/workers/nosuch") == (
            400,
            {"error": "invalid workerID nosuch"},
        )

        # flush and rm-worker
        assert await call("DELETE", "/jobs/disabled") == (200, {"message": "flushed"})
        await until(lambda: site.job("w1", "job") is None, "the disabled job flushed")
        assert await call("DELETE", "/workers/old1") == (200, {"message": "deleted"})
        status, workers = await call("GET", "/workers")
        await until(
            lambda: [w.name for w in site.view.workers()] == ["w1"], "old1 removed from workers"
        )

        with site.view.engine.connect() as conn:
            issuers = set(conn.execute(text("SELECT issuer FROM commands")).scalars())
        assert issuers == {"tunasync-api 127.0.0.1"}
