"""Commands reach old tunasync workers: from the command stream to the URL they registered.

A small aiohttp server stands in for the old worker's command endpoint and answers as
tunasync's worker does; it checks the ``WorkerCmd`` JSON byte for byte as tunasync's manager
forwards it.  Commands are sent as ``mirrorbus ctl`` sends them (admin certificate, through the
command stream); the answers and the view are what a user sees.  The failure modes (500, a
reply too slow, nobody listening) each end in a rejected answer with the reason, never a hang.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import anyio
import pytest
from conftest import RunningServer
from gateway_harness import GatewaySite, OldWorker, bus_as, mirror_status, registration
from gateway_harness import running_gateway as gateway

from mirrorbus.control import Control
from mirrorbus.errors import CommandRejected
from mirrorbus.host.server import free_port

pytestmark = pytest.mark.anyio
JSON = "application/json; charset=utf-8"


async def _old_worker(gw: GatewaySite, name: str, url: str, jobs: tuple[str, ...]) -> None:
    assert (await gw.call("POST", "/workers", registration(name, url)))[0] == 200
    for job in jobs:
        report = mirror_status(job, name, "success", size="1G")
        assert (await gw.call("POST", f"/workers/{name}/jobs/{job}", report))[0] == 200
    for job in jobs:
        await gw.wait_job(name, job, lambda s: s.status == "success")


async def test_ctl_commands_are_posted_as_tunasync_worker_cmds(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    old = OldWorker(jobs={"debian", "ubuntu"})
    admin = await bus_as(nats_server, "admin")
    try:
        async with old.serving(), gateway(nats_server, tmp_path) as gw:
            await _old_worker(gw, "old1", old.url, ("debian", "ubuntu", "arch"))
            ctl = Control(admin)

            answer = await ctl.command("start", "old1", "debian", force=True)
            assert (answer.accepted, answer.message) == (True, "OK")
            assert old.requests[-1] == (
                JSON,
                b'{"cmd":"start","mirror_id":"debian","args":null,"options":{"force":true}}',
            )
            answer = await ctl.command("restart", "old1", "debian")
            assert old.requests[-1][1] == (
                b'{"cmd":"restart","mirror_id":"debian","args":null,"options":{}}'
            )
            assert (await ctl.command("ping", "old1", "debian")).accepted

            # stop and disable: the old worker drops its own report of them, so they are
            # recorded from its accepting answer
            answer = await ctl.command("stop", "old1", "debian")
            assert (answer.accepted, answer.message) == (True, "OK: paused")
            assert old.requests[-1][1] == (
                b'{"cmd":"stop","mirror_id":"debian","args":null,"options":{}}'
            )
            await gw.wait_job("old1", "debian", lambda s: s.status == "paused")
            await ctl.command("disable", "old1", "ubuntu")
            await gw.wait_job("old1", "ubuntu", lambda s: s.status == "disabled")

            answer = await ctl.command("reload", "old1", None)
            assert answer.accepted and "reload sent" in answer.message
            assert old.requests[-1][1] == (
                b'{"cmd":"reload","mirror_id":"","args":null,"options":null}'
            )

            # the view knows arch, the old worker does not: its 404 is the rejection
            with pytest.raises(CommandRejected, match="Mirror ``arch'' not found"):
                await ctl.command("start", "old1", "arch")

            # set-size is the manager's business in tunasync: recorded, not posted
            sent = len(old.requests)
            answer = await ctl.command("set-size", "old1", "debian", size="7.5T")
            assert answer.accepted and len(old.requests) == sent
            await gw.wait_job("old1", "debian", lambda s: s.size == "7.5T")

            # issuer and answer are in the view's command records
            rows = gw.view.engine.connect()
            try:
                from sqlalchemy import text

                got = rows.execute(
                    text("SELECT verb, accepted, issuer FROM commands WHERE worker = 'old1'")
                ).all()
            finally:
                rows.close()
            assert ("stop", True, "CN=mirrorbus-admin") in [tuple(r) for r in got]
    finally:
        await admin.close()


async def test_a_command_to_an_idle_gateway_is_forwarded_at_once(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """A command that arrives while the relay waits in its pull (up to 5 s) is forwarded
    as it comes: every one answered well within a 2 s timeout, at several points of the
    pull (``/cmd``, which tunasynctl calls, waits 4.5 s for the answer)."""
    old = OldWorker(jobs={"debian"})
    admin = await bus_as(nats_server, "admin")
    try:
        async with old.serving(), gateway(nats_server, tmp_path) as gw:
            await _old_worker(gw, "old1", old.url, ("debian",))
            ctl = Control(admin)
            for pause in (1.5, 0.7, 2.9):  # at different points of the relay's pull
                await anyio.sleep(pause)
                answer = await ctl.command("ping", "old1", "debian", timeout=2.0)
                assert answer.accepted
    finally:
        await admin.close()


async def test_an_old_worker_failing_is_a_rejected_command(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    old = OldWorker(jobs={"debian"})
    nobody = f"http://127.0.0.1:{free_port()}/"
    admin = await bus_as(nats_server, "admin")
    try:
        async with old.serving(), gateway(nats_server, tmp_path, post_timeout=0.5) as gw:
            await _old_worker(gw, "old1", old.url, ("debian",))
            await _old_worker(gw, "gone", nobody, ("debian",))
            ctl = Control(admin)

            old.status = 500
            with pytest.raises(CommandRejected, match=r"answered HTTP 500: boom"):
                await ctl.command("start", "old1", "debian")
            old.status, old.delay = None, 2.0
            with pytest.raises(CommandRejected, match=r"no reply from .* within 0.5s"):
                await ctl.command("start", "old1", "debian")
            with pytest.raises(CommandRejected, match=rf"cannot reach {nobody}"):
                await ctl.command("stop", "gone", "debian")
            # a refused stop changes nothing
            state = await gw.wait_job("gone", "debian", lambda s: True)
            assert state.status == "success"
    finally:
        await admin.close()


def _server_tls(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    return ctx


@pytest.mark.parametrize("with_ca", [True, False])
async def test_https_to_the_api_and_to_old_workers(
    nats_server: RunningServer, tmp_path: Path, with_ca: bool
) -> None:
    """The API served over HTTPS (tls_cert/tls_key), and an old worker with an https URL
    verified with ``ca_cert``; without that CA its certificate is refused: a rejection."""
    pki = nats_server.pki_dir
    old = OldWorker(jobs={"debian"}, tls=_server_tls(pki))
    https = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(pki / "ca.crt")))
    async with (
        old.serving(),
        gateway(
            nats_server,
            tmp_path,
            tls_cert=pki / "server.crt",
            tls_key=pki / "server.key",
            ca_cert=pki / "ca.crt" if with_ca else None,
        ) as gw,
        aiohttp.ClientSession(connector=https) as client,
    ):
        assert gw.url.startswith("https://127.0.0.1:")

        async def post(path: str, body: object) -> tuple[int, object]:
            async with client.post(gw.url + path, json=body) as r:
                return r.status, await r.json()

        assert (await post("/workers", registration("old1", old.url)))[0] == 200
        report = mirror_status("debian", "old1", "success")
        assert (await post("/workers/old1/jobs/debian", report))[0] == 200
        await gw.wait_job("old1", "debian", lambda s: s.status == "success")
        cmd = {"cmd": "start", "mirror_id": "debian", "worker_id": "old1", "args": None}
        status, body = await post("/cmd", {**cmd, "options": {}})
        if with_ca:
            assert (status, body) == (200, {"message": "successfully send command to worker old1"})
            assert old.requests[-1][1] == (
                b'{"cmd":"start","mirror_id":"debian","args":null,"options":{}}'
            )
            # everything /cmd does (ask, append, wait, read back) is the gateway's to do
            assert gw.gateway.fleet.bus.violations == []
        else:
            assert status == 500 and "certificate verify failed" in str(body)
            assert old.requests == []


async def test_the_relay_makes_its_consumer_again(
    nats_server: RunningServer, tmp_path: Path
) -> None:
    """Its command consumer deleted under it (here with the manager's certificate, which may
    do that), the gateway makes it again and old workers get their commands."""
    import nats.js.errors

    from mirrorbus.events import Subjects

    s = Subjects()
    old = OldWorker(jobs={"debian"})
    admin = await bus_as(nats_server, "admin")
    manager = await bus_as(nats_server, "manager")
    try:
        async with old.serving(), gateway(nats_server, tmp_path) as gw:
            await _old_worker(gw, "old1", old.url, ("debian",))
            await manager.js.delete_consumer(s.cmd_stream, s.gateway_consumer)

            async def made_again() -> bool:
                try:
                    await manager.js.consumer_info(s.cmd_stream, s.gateway_consumer)
                    return True
                except nats.js.errors.NotFoundError:
                    return False

            with anyio.fail_after(20):
                while not await made_again():  # noqa: ASYNC110 (a server-side state)
                    await anyio.sleep(0.1)
            answer = await Control(admin).command("ping", "old1", "debian")
            assert answer.accepted and old.requests[-1][1].startswith(b'{"cmd":"ping"')
    finally:
        await manager.close()
        await admin.close()


async def test_names_as_tunasync_allows_them(nats_server: RunningServer, tmp_path: Path) -> None:
    """A worker and jobs named with dots and spaces report, are listed and take commands under
    the names as written; a native worker so named is still refused to the gateway."""
    old = OldWorker(jobs={"debian.iso", "ubuntu releases"})
    admin = await bus_as(nats_server, "admin")
    try:
        async with old.serving(), gateway(nats_server, tmp_path) as gw:
            await _old_worker(gw, "old.host", old.url, ("debian.iso", "ubuntu releases"))
            status, jobs = await gw.call("GET", "/workers/old.host/jobs")
            assert sorted(j["name"] for j in jobs) == ["debian.iso", "ubuntu releases"]
            answer = await Control(admin).command("start", "old.host", "ubuntu releases")
            assert answer.accepted
            assert old.requests[-1][1] == (
                b'{"cmd":"start","mirror_id":"ubuntu releases","args":null,"options":{}}'
            )
            nats_server.add_worker("na.tive")
            status, body = await gw.call("POST", "/workers", registration("na.tive", old.url))
            assert status == 500 and "has a mirrorbus certificate" in body["error"]
            status, _ = await gw.call("POST", "/workers", registration("na", old.url))
            assert status == 200
    finally:
        await admin.close()
