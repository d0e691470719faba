"""Serve job logs to ``ctl logs`` over the bus: the worker answers requests for its own jobs.

A request names a job and a byte offset (negative: the last that many bytes); the answer
carries the text from there (at most ``max_bytes``), the file it came from, where to continue,
and whether the job is still running, which is all ``ctl logs -f`` needs to follow a sync
(the request and answer types are wire contracts: :mod:`mirrorbus.events.wire`).
Only files of the job's own log directory are read: the ``latest`` link, resolved.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec
from anyio.abc import TaskStatus

from mirrorbus.bus import Message, answerable
from mirrorbus.events.wire import LogChunk, LogRequest

if TYPE_CHECKING:
    from mirrorbus.worker.service import Worker

log = logging.getLogger(__name__)

MAX_CHUNK = 256 * 1024


def read_chunk(log_dir: Path, request: LogRequest) -> LogChunk:
    """Read a piece of the job's log (synchronous file I/O; run it in a thread)."""
    latest = log_dir / "latest"
    try:
        newest = latest.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        return LogChunk(ok=False, error=f"no log yet for {request.job} in {log_dir}")
    target = newest
    if request.file:
        wanted = (log_dir / Path(request.file).name).resolve()
        failed = wanted.with_name(wanted.name + ".fail")
        target = wanted if wanted.exists() else failed if failed.exists() else newest
    if target.parent != log_dir.resolve():
        return LogChunk(ok=False, error="refused: not a file of the job's log directory")
    limit = max(1, min(request.max_bytes, MAX_CHUNK))
    with open(target, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        start = max(size + request.offset, 0) if request.offset < 0 else min(request.offset, size)
        fh.seek(start)
        data = fh.read(limit)
    return LogChunk(
        ok=True,
        file=target.name,
        data=data.decode(errors="replace"),
        offset=start + len(data),
        size=size,
        latest=newest.name,
    )


class LogServer:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        w = self.worker
        encoder = msgspec.json.Encoder()

        async def on_request(msg: Message) -> None:
            try:
                request = msgspec.json.decode(msg.data, type=LogRequest)
            except msgspec.DecodeError as exc:
                answer = LogChunk(ok=False, error=f"bad log request: {exc}")
            else:
                job = w.jobs.get(request.job)
                if job is None:
                    answer = LogChunk(
                        ok=False, error=f"unknown job {request.job!r} on worker {w.name}"
                    )
                else:
                    try:
                        answer = await anyio.to_thread.run_sync(
                            read_chunk, job.mirror.log_dir, request
                        )
                    except OSError as exc:
                        answer = LogChunk(ok=False, error=f"cannot read the log: {exc}")
                    answer = msgspec.structs.replace(answer, running=job.running)
            if answerable(msg.reply):
                # One message: the ctl's plain request does not put parts together.
                await w.bus.respond(msg, encoder.encode(answer), parts=False)

        sub = await w.bus.serve(w.bus.subjects.logs(w.name), on_request)
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await sub.unsubscribe()
