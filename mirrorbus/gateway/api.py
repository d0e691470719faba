"""tunasync's manager HTTP API, every route, for old workers and ``tunasynctl``.

::

    GET    /ping                          {"message":"pong"}
    GET    /jobs                          every job (tunasync's 13-field items)
    DELETE /jobs/disabled                 ``flush``: disabled jobs leave the view
    GET    /workers                       the workers (old ones with their URL)
    POST   /workers                       an old worker registers
    DELETE /workers/<id>                  ``rm-worker``
    GET    /workers/<id>/jobs             one worker's jobs (a worker's startup recovery)
    POST   /workers/<id>/jobs/<job>       an old worker reports a status
    POST   /workers/<id>/jobs/<job>/size  ``set-size``
    POST   /workers/<id>/schedules        an old worker's next runs
    POST   /cmd                           ``start|stop|disable|restart|ping|reload``

Reads come from the status view, so old and mirrorbus workers look alike.  Writes become
events: an old worker's reports are appended as that worker's events (see
:mod:`~mirrorbus.gateway.translate`), commands go through the command stream like
``mirrorbus ctl``'s (recorded with issuer ``tunasync-api <peer address>``), ``rm-worker`` and
``flush`` are the operators' view changes.  Status codes and bodies are tunasync's
(``{"error": ...}`` / ``{"message": ...}``, ``400 invalid workerID <id>`` for an unknown
worker), with its quirks fixed where they lost data or hid failures:

* a body that is not valid JSON, or a report without a mirror name, is refused (400) and
  nothing is stored (tunasync wrote the 400 and went on storing);
* ``/cmd`` answers once the worker has answered: 200 if it accepted, 500 with its reason if it
  rejected or did not answer (tunasync answered 200 whatever the worker did); an unknown verb
  is refused (tunasync ran ``start``);
* empty lists are ``[]`` (tunasync wrote ``null``).

tunasync's API has no authentication, so only the networks in ``allow`` may call it (default
loopback); anyone else gets 403 and a log line.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import msgspec
from aiohttp import web
from anyio.abc import TaskStatus

from mirrorbus.clock import Clock, SystemClock, new_id
from mirrorbus.config.gateway import GatewaySettings
from mirrorbus.config.listen import parse_listen, server_tls
from mirrorbus.control import Control
from mirrorbus.errors import (
    BusError,
    CodecError,
    CommandRejected,
    InvalidName,
    MirrorbusError,
    NoAnswer,
    PermissionDenied,
    PortInUseError,
    UnknownTarget,
)
from mirrorbus.events import (
    DisabledFlushed,
    Event,
    JobScheduled,
    JobState,
    Verb,
    WorkerForgotten,
    WorkerStarted,
    check_name,
    encode,
)
from mirrorbus.gateway.fleet import Fleet
from mirrorbus.gateway.translate import schedule_event, status_events
from mirrorbus.gateway.wire import (
    ClientCmdIn,
    MirrorStatusIn,
    SchedulesIn,
    SizeIn,
    WorkerStatusIn,
    decode,
    go_time,
)
from projections.status_view import StatusView
from projections.tunasync import go_json, go_time_text, jobs_json, mirror_status, worker_status

log = logging.getLogger(__name__)

CMD_WAIT = 4.5
"""Seconds ``/cmd`` waits for the worker's answer (``tunasynctl`` gives up after 5)."""

CMD_TTL = 60.0
"""A ``/cmd`` command not taken by its worker within this long is dropped, not run later."""

CMD_VERBS: tuple[Verb, ...] = ("start", "stop", "disable", "restart", "ping", "reload")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=go_json(value), status=status, content_type="application/json", charset="utf-8"
    )


def _error(message: str, status: int) -> web.Response:
    return _json({"error": message}, status)


def _message(message: str) -> web.Response:
    return _json({"message": message})


class TunasyncApi:
    def __init__(
        self,
        fleet: Fleet,
        view: StatusView,
        settings: GatewaySettings,
        *,
        clock: Clock | None = None,
        cmd_wait: float = CMD_WAIT,
    ) -> None:
        self.fleet = fleet
        self.bus = fleet.bus
        self.view = view
        self.settings = settings
        self.clock = clock or SystemClock()
        self.cmd_wait = cmd_wait
        self.host, self.port = parse_listen(settings.listen, "tunasync_api")
        self.app = web.Application(middlewares=[self._guard])
        r = self.app.router
        r.add_get("/ping", self.ping)
        r.add_get("/jobs", self.jobs)
        r.add_delete("/jobs/disabled", self.flush)
        r.add_get("/workers", self.workers)
        r.add_post("/workers", self.register)
        r.add_delete("/workers/{id}", self.remove_worker)
        r.add_get("/workers/{id}/jobs", self.worker_jobs)
        r.add_post("/workers/{id}/jobs/{job}", self.report)
        r.add_post("/workers/{id}/jobs/{job}/size", self.set_size)
        r.add_post("/workers/{id}/schedules", self.schedules)
        r.add_post("/cmd", self.command)

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    # -- who may call, and which worker ------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.settings.allows(request.remote):
            log.warning(
                "tunasync API: refused %s %s from %s (not in [tunasync_api] allow)",
                request.method,
                request.path,
                request.remote,
            )
            return _error(f"{request.remote} may not use this API", 403)
        return await handler(request)

    def _by(self, request: web.Request) -> str:
        return f"tunasync-api {request.remote}"

    async def _known(self, worker: str) -> bool:
        if await self.fleet.old_worker(worker) is not None:
            return True
        known, _, _ = await anyio.to_thread.run_sync(self.view.target, worker, None)
        return known

    async def _job(self, worker: str, job: str) -> JobState | None:
        if await self.fleet.old_worker(worker) is not None:
            state = (await self.fleet.jobs(worker)).get(job)
        else:
            states = await anyio.to_thread.run_sync(self.view.jobs, worker)
            state = next((s for s in states if s.name == job), None)
        return None if state is None or state.removed else state

    # -- reads -------------------------------------------------------------------------------
    async def ping(self, _request: web.Request) -> web.Response:
        return _message("pong")

    async def jobs(self, _request: web.Request) -> web.Response:
        try:
            body = await anyio.to_thread.run_sync(lambda: jobs_json(self.view.jobs()))
        except MirrorbusError as exc:
            return _error(f"failed to list all mirror status: {exc}", 500)
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    async def workers(self, _request: web.Request) -> web.Response:
        try:
            olds = await self.fleet.old_workers()
            rows = await anyio.to_thread.run_sync(self.view.workers)
        except MirrorbusError as exc:
            return _error(f"failed to list workers: {exc}", 500)
        items = []
        for row in rows:
            item = worker_status(row)
            old = olds.pop(row.name, None)
            item["url"] = "" if old is None else old.url
            items.append(item)
        for old in olds.values():  # registered just now, not yet in the view
            at = go_time_text(old.registered)
            items.append(
                {
                    "id": old.name,
                    "url": old.url,
                    "token": "REDACTED",
                    "last_online": at,
                    "last_register": at,
                }
            )
        return _json(items)

    async def worker_jobs(self, request: web.Request) -> web.Response:
        worker = request.match_info["id"]
        try:
            if not await self._known(worker):
                return _error(f"invalid workerID {worker}", 400)
            states = await anyio.to_thread.run_sync(self.view.jobs, worker)
        except MirrorbusError as exc:
            return _error(f"failed to list jobs of worker {worker}: {exc}", 500)
        return _json([mirror_status(s) for s in states])

    # -- an old worker's reports -------------------------------------------------------------
    async def register(self, request: web.Request) -> web.Response:
        try:
            body = decode(await request.read(), WorkerStatusIn)
            check_name(body.id, "worker id")
        except (CodecError, InvalidName) as exc:
            return _error(str(exc), 400)
        parts = urlsplit(body.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return _error(f"url {body.url!r} is not an http(s) URL of the worker", 400)
        now = self.clock.now()
        event = WorkerStarted(
            id=new_id(),
            at=now,
            worker=body.id,
            version="tunasync",
            hostname=parts.hostname,
            url=body.url,
        )
        try:
            async with self.fleet.lock:
                await self.fleet.emit(body.id, [event])
        except MirrorbusError as exc:
            return _error(f"failed to register worker: {_why(exc, body.id)}", 500)
        log.info("tunasync worker %s registered (commands to %s)", body.id, body.url)
        at = go_time_text(now)
        return _json(
            {
                "id": body.id,
                "url": body.url,
                "token": body.token,
                "last_online": at,
                "last_register": at,
            }
        )

    async def report(self, request: web.Request) -> web.Response:
        worker = request.match_info["id"]
        try:
            if not await self._known(worker):
                return _error(f"invalid workerID {worker}", 400)
            body = decode(await request.read(), MirrorStatusIn)
        except CodecError as exc:
            return _error(str(exc), 400)
        except MirrorbusError as exc:
            return _error(str(exc), 500)
        if not body.name:
            return _error("mirror Name should not be empty", 400)
        try:
            check_name(body.name, "mirror name")
            async with self.fleet.lock:
                jobs = await self.fleet.jobs(worker)
                events = status_events(jobs.get(body.name), body, worker, self.clock.now(), new_id)
                await self.fleet.emit(worker, events)
                state = jobs[body.name]
        except InvalidName as exc:
            return _error(str(exc), 400)
        except MirrorbusError as exc:
            return _error(
                f"failed to update job {body.name} of worker {worker}: {_why(exc, worker)}", 500
            )
        if body.status == "pre-syncing":
            log.info("Job [%s] @<%s> starts syncing", body.name, worker)
        else:
            log.info("Job [%s] @<%s> %s", body.name, worker, body.status)
        return _json(mirror_status(state))

    async def schedules(self, request: web.Request) -> web.Response:
        worker = request.match_info["id"]
        try:
            if not await self._known(worker):
                return _error(f"invalid workerID {worker}", 400)
            body = decode(await request.read(), SchedulesIn)
            wanted = [(e.name, go_time(e.next_schedule)) for e in body.schedules or ()]
        except CodecError as exc:
            return _error(str(exc), 400)
        except MirrorbusError as exc:
            return _error(str(exc), 500)
        empty = any(not name for name, _ in wanted)
        try:
            async with self.fleet.lock:
                jobs = await self.fleet.jobs(worker)
                now = self.clock.now()
                events: list[Event] = []
                for name, next_at in wanted:
                    state = jobs.get(name)
                    if not name or state is None or state.removed:
                        continue  # (unknown jobs are skipped, as tunasync does)
                    event: JobScheduled | None = schedule_event(state, next_at, now, new_id)
                    if event is not None:
                        events.append(event)
                await self.fleet.emit(worker, events)
        except MirrorbusError as exc:
            return _error(
                f"failed to update job schedules of worker {worker}: {_why(exc, worker)}", 500
            )
        if empty:
            return _error("mirror Name should not be empty", 400)
        return _json({})

    # -- tunasynctl ----------------------------------------------------------------------------
    async def set_size(self, request: web.Request) -> web.Response:
        worker = request.match_info["id"]
        try:
            if not await self._known(worker):
                return _error(f"invalid workerID {worker}", 400)
            body = decode(await request.read(), SizeIn)
            state = await self._job(worker, body.name) if body.name else None
        except CodecError as exc:
            return _error(str(exc), 400)
        except MirrorbusError as exc:
            return _error(str(exc), 500)
        if state is None:
            return _error(f"no mirror '{body.name}' exists in worker '{worker}'", 500)
        size = body.size.strip()
        if not size:
            return _error("size should not be empty", 400)
        try:
            # Through the command stream, as `ctl set-size`: the worker (or, for an old one,
            # this gateway on its behalf) records it.
            await self._control(request).command(
                "set-size", worker, body.name, size=size, timeout=self.cmd_wait, ttl=CMD_TTL
            )
        except MirrorbusError as exc:
            return _error(f"failed to set the size of {body.name} on {worker}: {exc}", 500)
        return _json(mirror_status(msgspec.structs.replace(state, size=size)))

    async def command(self, request: web.Request) -> web.Response:
        try:
            body = decode(await request.read(), ClientCmdIn)
        except CodecError as exc:
            return _error(str(exc), 400)
        worker = body.worker_id
        if not worker:
            return web.Response(status=500)  # tunasync: "not implemented yet"
        verb = next((v for v in CMD_VERBS if v == body.cmd), None)
        if verb is None:
            return _error(f"unknown command {body.cmd!r}: use {', '.join(CMD_VERBS)}", 400)
        try:
            if not await self._known(worker):
                return _error(f"worker {worker} is not registered yet", 400)
        except MirrorbusError as exc:
            return _error(str(exc), 500)
        job = None if verb == "reload" else body.mirror_id
        if job == "":
            return _error(f"{verb} needs a mirror_id", 400)
        force = bool((body.options or {}).get("force", False))
        try:
            await self._control(request).command(
                verb, worker, job, force=force, timeout=self.cmd_wait, ttl=CMD_TTL, args=body.args
            )
        except (UnknownTarget, InvalidName) as exc:
            return _error(str(exc), 400)
        except (CommandRejected, NoAnswer, BusError) as exc:
            return _error(f"{verb} {job or ''} on worker {worker}: {exc}", 500)
        return _message(f"successfully send command to worker {worker}")

    def _control(self, request: web.Request) -> Control:
        control = Control(self.bus, self.clock)
        control.issuer = self._by(request)
        return control

    async def remove_worker(self, request: web.Request) -> web.Response:
        worker = request.match_info["id"]
        try:
            if not await self._known(worker):
                return _error(f"invalid workerID {worker}", 400)
            event = WorkerForgotten(
                id=new_id(), at=self.clock.now(), by=self._by(request), worker=worker
            )
            async with self.fleet.lock:
                await self.fleet.emit(worker, [event])
        except MirrorbusError as exc:
            return _error(f"failed to delete worker: {exc}", 500)
        return _message("deleted")

    async def flush(self, request: web.Request) -> web.Response:
        event = DisabledFlushed(id=new_id(), at=self.clock.now(), by=self._by(request))
        try:
            await self.bus.append(self.bus.subjects.admin_events, encode(event), event.id)
        except MirrorbusError as exc:
            return _error(f"failed to flush disabled jobs: {exc}", 500)
        self.fleet.forget_jobs()
        return _message("flushed")

    # -- serving -----------------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext | None:
        return server_tls(self.settings.tls_cert, self.settings.tls_key, key_name="tunasync_api")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port, ssl_context=self._ssl())
            try:
                await site.start()
            except OSError as exc:
                raise PortInUseError(
                    f"cannot listen on {self.settings.listen} for tunasync's API: "
                    f"{exc.strerror or exc}"
                ) from None
            log.info(
                "tunasync API on %s (allowed from %s)", self.url, ", ".join(self.settings.allow)
            )
            task_status.started()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()


def _why(exc: MirrorbusError, worker: str) -> str:
    if isinstance(exc, PermissionDenied):
        return (
            f"worker {worker} has a mirrorbus certificate: only it may report for itself "
            f"(the server refused the gateway: {exc})"
        )
    return str(exc)
