"""What every scenario shares: a private nats-server with mutual TLS, clients by role,
fast generation of events, timing, and the result rows of the table.

Each scenario gets its own server (fresh JetStream store, free loopback port) so that no
scenario measures the leftovers of another; the PKI (CA, server, manager, admin and the
benchmark workers) is made once per run, with :func:`mirrorbus.host.pki.ensure_pki`, exactly as
``mirrorbus up`` makes it.  Every wait here is bounded, and every server is stopped when its
``with`` block ends, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import anyio
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mirrorbus.bus import Bus, connect, settings_from_paths
from mirrorbus.clock import new_id
from mirrorbus.events import (
    AttemptStarted,
    JobConfigured,
    JobEvent,
    JobScheduled,
    RunStarted,
    RunSucceeded,
    Subjects,
    decode_event,
    encode,
)
from mirrorbus.host import natsconf, pki
from mirrorbus.host.server import NatsServer, find_nats_server, free_port

T = TypeVar("T")

WORKERS = ("bench", "ingest", "ctl", "sched", "schedram", "restore1", "restoreN", "foot")
"""Worker certificates issued once per run; each scenario uses its own names."""

BenchEvent = JobConfigured | RunStarted | AttemptStarted | RunSucceeded | JobScheduled
"""The job events the generators make (what a worker emits for a successful run)."""

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PUBLISH_WINDOW = 4000
"""Asynchronous publishes in flight while generating events (nats-py's default limit)."""


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a figure, its same-run baseline, and the target on the ratio."""

    scenario: str
    figure: str
    value: float
    baseline: float | None
    unit: str
    target: str = ""
    passed: bool | None = None
    note: str = ""
    higher_is_better: bool = True

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def check(
    ratio: float | None, *, at_least: float | None = None, at_most: float | None = None
) -> bool | None:
    if ratio is None:
        return None
    if at_least is not None and ratio < at_least:
        return False
    return not (at_most is not None and ratio > at_most)


def judged(row: Row, *, at_least: float | None = None, at_most: float | None = None) -> Row:
    """``row`` with pass/fail set from its ratio and the limits."""
    return replace(row, passed=check(row.ratio, at_least=at_least, at_most=at_most))


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "ms":
        text = f"{value:.2f}" if value < 100 else f"{value:.0f}"
    elif unit == "s":
        text = f"{value:.3f}" if value < 10 else f"{value:.1f}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def table(rows: Sequence[Row]) -> str:
    """The one table: figure, baseline, ratio, target, pass/fail, notes (Markdown)."""
    header = ("scenario", "figure", "value", "baseline", "ratio", "target", "result", "note")
    lines = [header]
    for r in rows:
        result = "—" if r.passed is None else ("PASS" if r.passed else "FAIL")
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}×"
        lines.append(
            (
                r.scenario,
                r.figure,
                fmt(r.value, r.unit),
                fmt(r.baseline, r.unit),
                ratio,
                r.target or "—",
                result,
                r.note,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


# -- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    """A running nats-server (TLS, JetStream) and how to reach it as any role."""

    root: Path
    pki_dir: Path
    server: NatsServer
    subjects: Subjects = field(default_factory=Subjects)

    @property
    def url(self) -> str:
        return self.server.url

    async def bus(self, role: str, name: str | None = None) -> Bus:
        """A connected :class:`Bus` with the certificate of ``role`` (worker ``name``)."""
        stem = f"worker-{name}" if role == "worker" else role
        inbox = Subjects.worker_inbox(name) if name else None
        settings = settings_from_paths(
            [self.url], self.pki_dir, stem, inbox_prefix=inbox, name=f"bench-{stem}"
        )
        return await connect(settings, reconnect=False)

    async def ensure_streams(self) -> None:
        admin = await self.bus("admin")
        try:
            await admin.ensure_streams()
        finally:
            await admin.close()


def make_pki(root: Path) -> Path:
    directory = root / "pki"
    pki.ensure_pki(directory, pki.DEFAULT_HOSTS, WORKERS)
    return directory


@contextlib.contextmanager
def stack(root: Path, pki_dir: Path, name: str) -> Iterator[Stack]:
    """Start a private nats-server for one scenario under ``root/name``; stop it at the end."""
    base = root / name
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = base / "nats.conf"
    config.write_text(
        natsconf.render_server_config(
            pki_dir=pki_dir,
            store_dir=base / "jetstream",
            host="127.0.0.1",
            port=port,
            subjects=Subjects(),
            workers=WORKERS,
        )
    )
    server = NatsServer(
        find_nats_server(), config, host="127.0.0.1", port=port, log_file=base / "nats.log"
    )
    server.start()
    try:
        yield Stack(root=base, pki_dir=pki_dir, server=server)
    finally:
        server.stop()


# -- events ----------------------------------------------------------------------------------


def job_name(j: int) -> str:
    return f"job{j:05d}"


def configured(worker: str, jobs: int) -> list[BenchEvent]:
    return [
        JobConfigured(
            id=new_id(),
            at=T0,
            worker=worker,
            job=job_name(j),
            upstream=f"rsync://mirror.example.org/{job_name(j)}/",
            interval=3600,
        )
        for j in range(jobs)
    ]


def one_run(worker: str, jobs: int, r: int) -> list[BenchEvent]:
    """Every job's run number ``r``: started, attempt, succeeded, next schedule (4 events)."""
    events: list[BenchEvent] = []
    for j in range(jobs):
        at = T0 + timedelta(hours=r, milliseconds=j)
        run_id = new_id()
        name = job_name(j)
        ended = at + timedelta(seconds=30)
        events += [
            RunStarted(id=new_id(), at=at, worker=worker, job=name, run_id=run_id),
            AttemptStarted(
                id=new_id(),
                at=at,
                worker=worker,
                job=name,
                run_id=run_id,
                attempt=1,
                log_file=f"/var/log/{name}.log",
            ),
            RunSucceeded(
                id=new_id(),
                at=ended,
                worker=worker,
                job=name,
                run_id=run_id,
                attempt=1,
                size=f"{r}.5G",
            ),
            JobScheduled(
                id=new_id(),
                at=at + timedelta(seconds=30),
                worker=worker,
                job=job_name(j),
                next_at=at + timedelta(hours=1, seconds=30),
            ),
        ]
    return events


def history(worker: str, jobs: int, count: int) -> Iterator[list[BenchEvent]]:
    """About ``count`` job events of ``worker``, in chunks (configuration, then whole runs)."""
    yield configured(worker, jobs)
    made = jobs
    r = 0
    while made < count:
        chunk = one_run(worker, jobs, r)[: count - made]
        made += len(chunk)
        r += 1
        yield chunk


async def publish_all(bus: Bus, events: Iterable[JobEvent]) -> int:
    """Append ``events`` with asynchronous JetStream publishes (ids as ``Nats-Msg-Id``), at
    most :data:`PUBLISH_WINDOW` in flight; return how many.  For preparing a log fast."""
    s = bus.subjects
    n = 0
    for event in events:
        await bus.js.publish_async(
            s.job_events(event.worker, event.job),
            encode(event),
            wait_stall=30,
            headers={"Nats-Msg-Id": event.id},
        )
        n += 1
        if n % PUBLISH_WINDOW == 0:
            await bounded(bus.js.publish_async_completed(), 60, "async publishes")
    await bounded(bus.js.publish_async_completed(), 60, "async publishes")
    return n


async def fetch_and_decode(bus: Bus, count: int, batch: int = 2000) -> int:
    """The baseline of reading: the whole event stream through an ephemeral ordered pull
    consumer (what ``catch_up`` uses), every message decoded, no database."""
    s = bus.subjects
    sub = await bus.js.pull_subscribe(
        s.all_events,
        stream=s.evt_stream,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=60,
            mem_storage=True,
        ),
    )
    seen = 0
    try:
        while seen < count:
            msgs = await sub.fetch(batch, timeout=5)
            for m in msgs:
                int(m.metadata.sequence.stream)
                decode_event(m.data)
            seen += len(msgs)
    finally:
        await sub.unsubscribe()
    return seen


# -- timing ----------------------------------------------------------------------------------


async def bounded(awaitable: Awaitable[T], timeout: float, what: str) -> T:
    with anyio.fail_after(timeout):
        try:
            return await awaitable
        except TimeoutError:
            raise TimeoutError(f"{what} did not finish within {timeout:g}s") from None


async def timed(fn: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    started = time.perf_counter()
    value = await fn()
    return time.perf_counter() - started, value


async def wait_until(
    probe: Callable[[], bool], timeout: float, what: str, every: float = 0.01
) -> None:
    """Poll ``probe`` until true; raise TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await anyio.sleep(every)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# -- workers ---------------------------------------------------------------------------------


def write_worker_config(
    root: Path, name: str, jobs: int, *, concurrent: int = 64, interval_minutes: int = 1440
) -> Path:
    """A tunasync worker config with ``jobs`` command jobs running ``true``."""
    path = root / f"{name}.toml"
    lines = [
        "[global]",
        f'name = "{name}"',
        f'mirror_dir = "{root}/mirrors"',
        f'log_dir = "{root}/logs/{{{{.Name}}}}"',
        f"concurrent = {concurrent}",
        "retry = 1",
        f"interval = {interval_minutes}",
        "timeout = 60",
        "",
    ]
    for j in range(jobs):
        lines += [
            "[[mirrors]]",
            f'name = "{job_name(j)}"',
            'provider = "command"',
            f'upstream = "https://mirror.example.org/{job_name(j)}/"',
            'command = "true"',
            "",
        ]
    path.write_text("\n".join(lines))
    return path
