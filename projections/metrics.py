"""Prometheus metrics read from the status view at scrape time (prometheus-client).

Nothing is counted in memory: every value is a read of the view, so the numbers are the same
whichever process serves them (the manager, or a standalone ``mirrorbus project http``) and
survive restarts.  The counters are counts of rows of the ``runs`` table, which is the log's
history of runs: they only go up, as Prometheus counters must.

Series (labels ``worker``, ``job`` unless said otherwise)::

    mirrorbus_job_status{status}                     1 for the job's status, 0 for the others
    mirrorbus_job_last_success_timestamp_seconds     when known
    mirrorbus_job_last_run_duration_seconds          of the last finished run
    mirrorbus_job_size_bytes                         when the size text parses (see parse_size)
    mirrorbus_job_last_exit_code                     when known
    mirrorbus_job_runs_total, mirrorbus_job_failures_total
    mirrorbus_job_consecutive_failures               failed runs since the last success
    mirrorbus_job_interval_seconds                   the job's configured interval
    mirrorbus_worker_online{worker}, mirrorbus_worker_last_seen_timestamp_seconds{worker}
    mirrorbus_projection_position                    last applied stream sequence
    mirrorbus_projection_lag_events                  stream's last sequence minus position
    mirrorbus_dead_letters_total                     events set aside as undecodable
    mirrorbus_stream_bytes{stream}, mirrorbus_stream_messages{stream}   what JetStream stores
    mirrorbus_view_bytes                             the status view's tables (or file)

``examples/monitoring/`` has alert rules and a Grafana dashboard over exactly these.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from mirrorbus.events import STATUSES
from projections import tables as t
from projections.status_view import StatusView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]?)(i?)(B?)\s*$", re.IGNORECASE)
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def parse_size(text: str) -> float | None:
    """Bytes of a size text as jobs report it, or None.

    ``1.5K``, ``596G`` and ``2.1T`` (du -h style) and ``12KiB`` are powers of 1024; ``5GB``
    and ``3 MB`` (an explicit ``B`` without ``i``) are powers of 1000; a bare number is bytes.
    ``unknown`` and anything else give None: no series rather than a wrong one.
    """
    m = _SIZE.match(text)
    if m is None:
        return None
    number, unit, binary, byte = m.groups()
    power = _POWERS[unit.upper()]
    base = 1000 if (byte and not binary and unit) else 1024
    return float(number) * float(base**power)


@dataclass(frozen=True, slots=True)
class RunStats:
    runs: int
    failures: int
    last_duration: float | None


def run_stats(view: StatusView) -> dict[tuple[str, str], RunStats]:
    """Per job: runs, failed runs and the duration of the last finished run (two queries)."""
    r = t.runs
    counts = select(
        r.c.worker,
        r.c.job,
        func.count(),
        func.sum(case((r.c.result == "failed", 1), else_=0)),
    ).group_by(r.c.worker, r.c.job)
    last_end = (
        select(r.c.worker, r.c.job, func.max(r.c.ended_at).label("ended"))
        .where(r.c.ended_at.is_not(None))
        .group_by(r.c.worker, r.c.job)
        .subquery()
    )
    durations = select(r.c.worker, r.c.job, func.max(r.c.ended_at - r.c.started_at)).join(
        last_end,
        (r.c.worker == last_end.c.worker)
        & (r.c.job == last_end.c.job)
        & (r.c.ended_at == last_end.c.ended),
    )
    durations = durations.group_by(r.c.worker, r.c.job)
    with view.engine.connect() as conn:
        count_rows = conn.execute(counts).all()
        last = {(w, j): d for w, j, d in conn.execute(durations).all()}
    return {
        (w, j): RunStats(
            runs=int(n),
            failures=int(f or 0),
            last_duration=None if last.get((w, j)) is None else last[(w, j)] / 1_000_000,
        )
        for w, j, n, f in count_rows
    }


def consecutive_failures(view: StatusView) -> dict[tuple[str, str], int]:
    """Per job: its failed runs since its last successful one (jobs with none are left out)."""
    r = t.runs
    last_ok = (
        select(r.c.worker, r.c.job, func.max(r.c.started_at).label("ok"))
        .where(r.c.result == "success")
        .group_by(r.c.worker, r.c.job)
        .subquery()
    )
    query = (
        select(r.c.worker, r.c.job, func.count())
        .select_from(
            r.outerjoin(last_ok, (r.c.worker == last_ok.c.worker) & (r.c.job == last_ok.c.job))
        )
        .where(r.c.result == "failed", (last_ok.c.ok.is_(None)) | (r.c.started_at > last_ok.c.ok))
        .group_by(r.c.worker, r.c.job)
    )
    with view.engine.connect() as conn:
        return {(w, j): int(n) for w, j, n in conn.execute(query).all()}


class ViewCollector(Collector):
    """Collects every series from ``view``; ``stream_last`` is the stream's last sequence
    (set by the server before each scrape, None when the bus could not say)."""

    def __init__(self, view: StatusView) -> None:
        self.view = view
        self.stream_last: int | None = None
        self.stream_usage: dict[str, tuple[int, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        job_labels = ["worker", "job"]
        status = GaugeMetricFamily(
            "mirrorbus_job_status", "1 for the job's current status", labels=[*job_labels, "status"]
        )
        success = GaugeMetricFamily(
            "mirrorbus_job_last_success_timestamp_seconds",
            "Unix time of the job's last successful run",
            labels=job_labels,
        )
        duration = GaugeMetricFamily(
            "mirrorbus_job_last_run_duration_seconds",
            "Duration of the job's last finished run",
            labels=job_labels,
        )
        size = GaugeMetricFamily(
            "mirrorbus_job_size_bytes",
            "Size of the mirror as the job reported it",
            labels=job_labels,
        )
        exit_code = GaugeMetricFamily(
            "mirrorbus_job_last_exit_code", "Exit code of the job's last attempt", labels=job_labels
        )
        runs = CounterMetricFamily("mirrorbus_job_runs", "Runs of the job", labels=job_labels)
        failures = CounterMetricFamily(
            "mirrorbus_job_failures", "Runs of the job that failed", labels=job_labels
        )
        in_a_row = GaugeMetricFamily(
            "mirrorbus_job_consecutive_failures",
            "Failed runs of the job since its last successful one",
            labels=job_labels,
        )
        interval = GaugeMetricFamily(
            "mirrorbus_job_interval_seconds",
            "The job's configured interval between runs",
            labels=job_labels,
        )
        stats = run_stats(self.view)
        streak = consecutive_failures(self.view)
        for job in self.view.jobs():
            key = [job.worker, job.name]
            for value in STATUSES:
                status.add_metric([*key, value], 1.0 if job.status == value else 0.0)
            if job.last_update is not None:
                success.add_metric(key, job.last_update.timestamp())
            bytes_ = parse_size(job.size)
            if bytes_ is not None:
                size.add_metric(key, bytes_)
            if job.exit_code is not None:
                exit_code.add_metric(key, float(job.exit_code))
            st = stats.get((job.worker, job.name), RunStats(0, 0, None))
            runs.add_metric(key, float(st.runs))
            failures.add_metric(key, float(st.failures))
            if st.last_duration is not None:
                duration.add_metric(key, st.last_duration)
            in_a_row.add_metric(key, float(streak.get((job.worker, job.name), 0)))
            interval.add_metric(key, float(job.interval))
        yield from (status, success, duration, size, exit_code, runs, failures, in_a_row, interval)

        online = GaugeMetricFamily(
            "mirrorbus_worker_online", "1 while the worker is running", labels=["worker"]
        )
        seen = GaugeMetricFamily(
            "mirrorbus_worker_last_seen_timestamp_seconds",
            "Unix time of the worker's last event",
            labels=["worker"],
        )
        for w in self.view.workers():
            online.add_metric([w.name], 1.0 if w.online else 0.0)
            if w.last_seen is not None:
                seen.add_metric([w.name], w.last_seen.timestamp())
        yield from (online, seen)

        position = self.view.position()
        yield GaugeMetricFamily(
            "mirrorbus_projection_position",
            "Last stream sequence applied to the view",
            value=float(position),
        )
        if self.stream_last is not None:
            yield GaugeMetricFamily(
                "mirrorbus_projection_lag_events",
                "Events in the stream not yet applied to the view",
                value=float(max(self.stream_last - position, 0)),
            )
        with self.view.engine.connect() as conn:
            dead = conn.execute(select(func.count()).select_from(t.dead_letters)).scalar()
        yield CounterMetricFamily(
            "mirrorbus_dead_letters",
            "Events set aside as undecodable (mirrorbus manager dead-letters lists them)",
            value=float(dead or 0),
        )
        if self.stream_usage is not None:
            stored = GaugeMetricFamily(
                "mirrorbus_stream_bytes", "Bytes JetStream stores for the stream", labels=["stream"]
            )
            messages = GaugeMetricFamily(
                "mirrorbus_stream_messages", "Messages in the stream", labels=["stream"]
            )
            for name, (nbytes, count) in sorted(self.stream_usage.items()):
                stored.add_metric([name], float(nbytes))
                messages.add_metric([name], float(count))
            yield from (stored, messages)
        size_of_view = self.view.size_bytes()
        if size_of_view is not None:
            yield GaugeMetricFamily(
                "mirrorbus_view_bytes", "Bytes the status view takes", value=float(size_of_view)
            )


class Metrics:
    """A registry of its own holding one :class:`ViewCollector` (not the global registry,
    so that several views in one process, as in tests, do not collide)."""

    def __init__(self, view: StatusView) -> None:
        self.collector = ViewCollector(view)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)

    def render(
        self, stream_last: int | None, stream_usage: dict[str, tuple[int, int]] | None = None
    ) -> bytes:
        """The text exposition format; synchronous (reads the database)."""
        self.collector.stream_last = stream_last
        self.collector.stream_usage = stream_usage
        return generate_latest(self.registry)
