"""The status page's JSON: every job with its last runs, the workers, and one job's history.

Served by the HTTP read side as ``GET /api/status`` and ``GET /api/history`` (the page's own
API; tunasync's ``/jobs`` stays byte-compatible and knows neither runs nor workers' state).
Times are Unix seconds (floats), ``null`` when unknown; texts are passed as they are (the
page puts them in the document as text, never as HTML).  Workers' host names and versions are
left out, as ``/workers`` leaves out their URLs: the page is public.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mirrorbus.events import JobState
from mirrorbus.events.wire import RunRow, WorkerRow
from projections.status_view import StatusView

MAX_RUNS = 50
MAX_HISTORY = 1000


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def run_dict(run: RunRow) -> dict[str, Any]:
    return {
        "start": _ts(run.started_at),
        "end": _ts(run.ended_at),
        "result": run.result,
        "error": run.error,
        "size": run.size,
        "attempts": run.attempts,
        "exit_code": run.exit_code,
        "reason": run.reason,
    }


def job_dict(job: JobState, runs: list[RunRow]) -> dict[str, Any]:
    return {
        "worker": job.worker,
        "name": job.name,
        "status": job.status,
        "is_master": job.is_master,
        "upstream": job.upstream,
        "desc": job.desc,
        "size": job.size,
        "error": job.error_msg,
        "interval": job.interval,
        "last_success": _ts(job.last_update),
        "last_started": _ts(job.last_started),
        "last_ended": _ts(job.last_ended),
        "next_run": _ts(job.next_schedule),
        "runs": [run_dict(r) for r in runs],
    }


def worker_dict(worker: WorkerRow) -> dict[str, Any]:
    return {
        "name": worker.name,
        "online": worker.online,
        "last_seen": _ts(worker.last_seen),
        "started": _ts(worker.started_at),
        "jobs": worker.jobs,
    }


def status_document(view: StatusView, runs: int) -> dict[str, Any]:
    """Jobs (each with its last ``runs`` runs, newest first) and workers."""
    recent: dict[tuple[str, str], list[RunRow]] = {}
    for run in view.recent_runs(max(0, min(runs, MAX_RUNS))) if runs > 0 else []:
        recent.setdefault((run.worker, run.job), []).append(run)
    return {
        "now": datetime.now(UTC).timestamp(),
        "position": view.position(),
        "jobs": [job_dict(j, recent.get((j.worker, j.name), [])) for j in view.jobs()],
        "workers": [worker_dict(w) for w in view.workers()],
    }


def history_document(view: StatusView, worker: str, job: str, limit: int) -> dict[str, Any] | None:
    """One job's runs, newest first (None if the view has no such job)."""
    known = [j for j in view.jobs(worker) if j.name == job]
    if not known:
        return None
    runs = view.history(worker, job, max(1, min(limit, MAX_HISTORY)))
    return {**job_dict(known[0], []), "runs": [run_dict(r) for r in runs]}
