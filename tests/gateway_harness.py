"""A manager with the tunasync gateway, in this process, on the ``nats_server`` fixture.

:func:`running_gateway` starts the manager (projector, queries) with the manager certificate
and the gateway with its own certificate (role ``gateway``), both on a SQLite view, and
yields a :class:`GatewaySite` to drive the gateway's HTTP API as tunasync's worker and
``tunasynctl`` would, and to read the view.  :class:`OldWorker` is a small aiohttp server
standing in for an unmodified tunasync worker's command endpoint: it records every request
and answers as tunasync's worker does (or as told: an error status, a slow reply).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from aiohttp import web
from conftest import RunningServer

from mirrorbus.bus import Bus, connect, settings_from_paths
from mirrorbus.config.gateway import GatewaySettings
from mirrorbus.events import JobState
from mirrorbus.gateway import Gateway
from mirrorbus.host.server import free_port
from mirrorbus.manager import Manager
from projections.status_view import StatusView

ZERO = "0001-01-01T00:00:00Z"


def mirror_status(name: str, worker: str, status: str, **kw: Any) -> dict[str, Any]:
    """A status report exactly as tunasync's worker sends it (zero times, size unknown)."""
    body = {
        "name": name,
        "worker": worker,
        "is_master": True,
        "status": status,
        "last_update": ZERO,
        "last_started": ZERO,
        "last_ended": ZERO,
        "next_schedule": ZERO,
        "upstream": f"rsync://upstream.example/{name}/",
        "size": "unknown",
        "error_msg": "",
    }
    body.update(kw)
    return body


def registration(worker: str, url: str) -> dict[str, Any]:
    """A tunasync worker's registration body."""
    return {"id": worker, "url": url, "token": "", "last_online": ZERO, "last_register": ZERO}


@dataclass
class GatewaySite:
    url: str
    view: StatusView
    http: aiohttp.ClientSession
    gateway: Gateway
    server: RunningServer

    async def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON body or None) of one request, sent as Go's http client
        sends it (``Content-Type: application/json; charset=utf-8``)."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {"Content-Type": "application/json; charset=utf-8"} if data else {}
        async with self.http.request(method, self.url + path, data=data, headers=headers) as r:
            text = await r.read()
            if r.status != 500 or text:
                assert r.headers["Content-Type"] == "application/json; charset=utf-8"
            return r.status, (json.loads(text) if text else None)

    async def wait_job(
        self, worker: str, name: str, probe: Callable[[JobState], bool], timeout: float = 10.0
    ) -> JobState:
        last = None
        with anyio.fail_after(timeout):
            while True:
                states = await anyio.to_thread.run_sync(self.view.jobs, worker)
                last = next((s for s in states if s.name == name), None)
                if last is not None and probe(last):
                    return last
                await anyio.sleep(0.05)
        raise AssertionError(f"{worker}/{name}: {last}")  # pragma: no cover


async def bus_as(server: RunningServer, role: str) -> Bus:
    settings = settings_from_paths([server.url], server.pki_dir, role, name=f"test-{role}")
    return await connect(settings, reconnect=False)


@asynccontextmanager
async def running_gateway(
    server: RunningServer,
    tmp_path: Path,
    *,
    allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128"),
    post_timeout: float = 4.0,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    ca_cert: Path | None = None,
    name: str = "m1",
) -> AsyncIterator[GatewaySite]:
    """A manager replica ``name`` (its view in ``tmp_path``) with a gateway."""
    await anyio.Path(tmp_path).mkdir(parents=True, exist_ok=True)
    view = StatusView(f"sqlite:///{tmp_path / 'view.db'}")
    manager_bus = await bus_as(server, "manager")
    gateway_bus = await bus_as(server, "gateway")
    listen = f"127.0.0.1:{free_port()}"
    settings = GatewaySettings(
        enable=True,
        listen=listen,
        allow=allow,
        tls_cert=tls_cert,
        tls_key=tls_key,
        ca_cert=ca_cert,
    )
    manager = Manager(manager_bus, view, name=name)
    gateway = Gateway(
        gateway_bus,
        view,
        manager.changes,
        settings,
        post_timeout=post_timeout,
        maker=manager_bus,
    )
    try:
        async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
            await tg.start(manager.run)
            await tg.start(gateway.run)
            yield GatewaySite(gateway.url, view, http, gateway, server)
            tg.cancel_scope.cancel()
    finally:
        await gateway_bus.close()
        await manager_bus.close()
        view.close()


@dataclass
class OldWorker:
    """A stand-in for a tunasync worker's command endpoint (``POST /``)."""

    jobs: set[str]
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    status: int | None = None  # answer this instead of tunasync's logic
    delay: float = 0.0
    port: int = field(default_factory=free_port)
    tls: ssl.SSLContext | None = None  # serve HTTPS with this context

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"https://localhost:{self.port}/"
        return f"http://127.0.0.1:{self.port}/"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append((request.headers.get("Content-Type", ""), body))
        if self.delay:
            await anyio.sleep(self.delay)
        if self.status is not None:
            return web.json_response({"msg": "boom"}, status=self.status)
        try:
            cmd = json.loads(body)
        except ValueError:
            return web.json_response({"msg": "Invalid request"}, status=400)
        mirror = cmd.get("mirror_id", "")
        if mirror == "" and cmd.get("cmd") != "reload":
            return web.json_response({"msg": "Invalid Command"}, status=406)
        if mirror not in self.jobs:
            return web.json_response({"msg": f"Mirror ``{mirror}'' not found"}, status=404)
        return web.json_response({"msg": "OK"})

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[OldWorker]:
        app = web.Application()
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self.tls).start()
            yield self
        finally:
            await runner.cleanup()
