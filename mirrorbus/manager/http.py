"""The HTTP read side: tunasync's read API, Prometheus metrics and the live status page.

Off unless enabled (``[http] enable = true`` or ``mirrorbus manager --http ADDR``).  Routes::

    GET /                    the status page (one HTML file, live through /events)
    GET /jobs                tunasync's GET /jobs: WebMirrorStatus items, byte-compatible
    GET /workers             tunasync's WorkerStatus items (url "", token "REDACTED")
    GET /workers/<id>/jobs   tunasync's MirrorStatus items of one worker
    GET /ping                {"message":"pong"}
    GET /metrics             Prometheus text format
    GET /events              server-sent events: "change" with the view's position
    GET /api/status?runs=N   the page's data: jobs with their last N runs, workers
    GET /api/history?worker=W&job=J&limit=N   one job's runs, newest first

The JSON read routes (``/jobs``, ``/workers``, ``/workers/<id>/jobs``, ``/ping``) carry
``Access-Control-Allow-Origin`` (``[http] allow_origin``, ``"*"`` by default): mirrorz's
front end and other status pages read ``/jobs`` from the visitor's browser, which refuses a
cross-origin answer without it.  A list of origins answers each listed one with itself (and
``Vary: Origin``); ``""`` or ``[]`` sends no header.
Only reads: tunasync's writing routes (``POST /workers/...``, ``POST /cmd``, ``DELETE``) are
replaced by the bus and answer 405/404.  Errors have tunasync's ``{"error": "..."}`` shape.
The server is aiohttp on the same event loop as the projector; database reads run in worker
threads.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from importlib import resources

import anyio
from aiohttp import web
from anyio.abc import TaskStatus

from mirrorbus.config.listen import HttpSettings, parse_listen, server_tls
from mirrorbus.errors import MirrorbusError, PortInUseError
from projections.changes import Changes
from projections.metrics import CONTENT_TYPE, Metrics
from projections.page_data import history_document, status_document
from projections.status_view import StatusView
from projections.tunasync import go_json, jobs_json, mirror_status, worker_status

log = logging.getLogger(__name__)

KEEPALIVE = 15.0


CORS_ROUTES = ("/jobs", "/workers", "/ping")
"""The read API that browsers of other sites may read (``/workers/<id>/jobs`` included)."""


def allowed_origin(allow: str | tuple[str, ...], path: str, origin: str | None) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for a request of ``path`` from ``origin``
    (None: send none)."""
    if not any(path == r or path.startswith(r + "/") for r in CORS_ROUTES):
        return None
    if isinstance(allow, str):
        return allow or None
    return origin if origin is not None and origin in allow else None


def _json(data: bytes, status: int = 200) -> web.Response:
    return web.Response(body=data, status=status, content_type="application/json", charset="utf-8")


def _error(message: str, status: int) -> web.Response:
    return _json(go_json({"error": message}), status)


def _int_arg(request: web.Request, name: str, default: int) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    return int(text) if text.isdigit() else None


async def _compressed_json(request: web.Request, doc: object) -> web.StreamResponse:
    """The page's JSON, gzip'd when the browser takes it (a page of 500 jobs with a dozen
    runs each is some hundred kilobytes, fetched again at every change)."""
    response = web.Response(
        body=json.dumps(doc, separators=(",", ":")).encode(),
        content_type="application/json",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )
    response.enable_compression()
    return response


class StatusHttp:
    def __init__(
        self,
        view: StatusView,
        changes: Changes,
        settings: HttpSettings,
        *,
        last_sequence: Callable[[], Awaitable[int]] | None = None,
        stream_usage: Callable[[], Awaitable[dict[str, tuple[int, int]]]] | None = None,
    ) -> None:
        self.view = view
        self.changes = changes
        self.settings = settings
        self.last_sequence = last_sequence
        self.stream_usage = stream_usage
        self.metrics = Metrics(view)
        self.host, self.port = parse_listen(settings.listen)
        self._closing = False
        self.app = web.Application()
        self.app.router.add_get("/", self.page)
        self.app.router.add_get("/ping", self.ping)
        self.app.router.add_get("/jobs", self.jobs)
        self.app.router.add_get("/workers", self.workers)
        self.app.router.add_get("/workers/{id}/jobs", self.worker_jobs)
        self.app.router.add_get("/metrics", self.metrics_page)
        self.app.router.add_get("/events", self.events)
        self.app.router.add_get("/api/status", self.page_status)
        self.app.router.add_get("/api/history", self.page_history)
        self.app.on_shutdown.append(self._on_shutdown)
        self.app.on_response_prepare.append(self._cors)
        if settings.replica:
            self.app.on_response_prepare.append(self._replica)

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls_cert else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    # -- handlers ----------------------------------------------------------------------
    async def page(self, _request: web.Request) -> web.Response:
        html = resources.files("projections").joinpath("page/index.html").read_bytes()
        return web.Response(
            body=html,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def ping(self, _request: web.Request) -> web.Response:
        return _json(go_json({"message": "pong"}))

    async def jobs(self, _request: web.Request) -> web.Response:
        try:
            body = await anyio.to_thread.run_sync(lambda: jobs_json(self.view.jobs()))
        except MirrorbusError as exc:
            return _error(f"failed to list all mirror status: {exc}", 500)
        return _json(body)

    async def workers(self, _request: web.Request) -> web.Response:
        try:
            rows = await anyio.to_thread.run_sync(self.view.workers)
        except MirrorbusError as exc:
            return _error(f"failed to list workers: {exc}", 500)
        return _json(go_json([worker_status(r) for r in rows]))

    async def worker_jobs(self, request: web.Request) -> web.Response:
        worker = request.match_info["id"]

        def read() -> bytes | None:
            if worker not in {w.name for w in self.view.workers()}:
                return None
            return go_json([mirror_status(s) for s in self.view.jobs(worker)])

        try:
            body = await anyio.to_thread.run_sync(read)
        except MirrorbusError as exc:
            return _error(f"failed to list jobs of worker {worker}: {exc}", 500)
        if body is None:
            return _error(f"invalid workerID {worker}", 400)
        return _json(body)

    async def metrics_page(self, _request: web.Request) -> web.Response:
        last: int | None = None
        if self.last_sequence is not None:
            try:
                with anyio.fail_after(2):
                    last = await self.last_sequence()
            except (MirrorbusError, TimeoutError) as exc:
                log.debug("no stream position for the lag metric: %s", exc)
        usage: dict[str, tuple[int, int]] | None = None
        if self.stream_usage is not None:
            with anyio.move_on_after(5):
                usage = await self.stream_usage()
        body = await anyio.to_thread.run_sync(self.metrics.render, last, usage)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def page_status(self, request: web.Request) -> web.StreamResponse:
        runs = _int_arg(request, "runs", 12)
        if runs is None:
            return _error("runs must be a whole number", 400)
        try:
            doc = await anyio.to_thread.run_sync(status_document, self.view, runs)
        except MirrorbusError as exc:
            return _error(f"failed to read the status: {exc}", 500)
        return await _compressed_json(request, doc)

    async def page_history(self, request: web.Request) -> web.StreamResponse:
        worker, job = request.query.get("worker"), request.query.get("job")
        limit = _int_arg(request, "limit", 100)
        if worker is None or job is None or limit is None:
            return _error("worker and job are needed (limit: a whole number)", 400)
        try:
            doc = await anyio.to_thread.run_sync(history_document, self.view, worker, job, limit)
        except MirrorbusError as exc:
            return _error(f"failed to read the history: {exc}", 500)
        if doc is None:
            return _error(f"no job {job!r} on worker {worker!r}", 404)
        return await _compressed_json(request, doc)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one ``change`` now, then one after every change of the view,
        and a comment line every 15 s so proxies keep the connection open."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        seen = -1
        idle = 0.0
        try:
            while not self._closing:
                with anyio.move_on_after(1.0):
                    seen = await self.changes.wait(seen)
                    data = json.dumps({"version": seen, "position": self.changes.position})
                    await response.write(f"event: change\ndata: {data}\n\n".encode())
                    idle = 0.0
                    continue
                idle += 1.0
                if idle >= KEEPALIVE:
                    await response.write(b": keepalive\n\n")
                    idle = 0.0
        except (ConnectionResetError, RuntimeError):  # the browser went away
            pass
        return response

    async def _replica(self, _request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Mirrorbus-Replica"] = self.settings.replica

    async def _cors(self, request: web.Request, response: web.StreamResponse) -> None:
        allow = self.settings.allow_origin
        value = allowed_origin(allow, request.path, request.headers.get("Origin"))
        if value is not None:
            response.headers["Access-Control-Allow-Origin"] = value
        if not isinstance(allow, str) and allow:
            response.headers["Vary"] = "Origin"

    async def _on_shutdown(self, _app: web.Application) -> None:
        self._closing = True

    # -- serving -----------------------------------------------------------------------
    def _ssl(self) -> ssl.SSLContext | None:
        return server_tls(
            self.settings.tls_cert, self.settings.tls_key, key_name="http", file="http"
        )

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
                    f"cannot listen on {self.settings.listen} for HTTP: {exc.strerror or exc}"
                ) from None
            log.info("HTTP on %s (/jobs, /workers, /metrics, status page /)", self.url)
            task_status.started()
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await runner.cleanup()
