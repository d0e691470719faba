"""What an old tunasync worker's reports mean as mirrorbus events (pure: no I/O, no clock).

A tunasync worker tells its manager the *status* a job is in; a mirrorbus worker records the
*transitions*.  :func:`status_events` turns one status report into the transitions a mirrorbus
worker would have emitted, given what is known of the job so far, so that the fold
(:func:`~mirrorbus.events.evolve`) gives the job tunasync's manager would have stored:

==============  ==========================================================================
report          events
==============  ==========================================================================
pre-syncing     ``RunStarted`` (a new run; a repeated pre-syncing changes nothing, as
                tunasync keeps ``last_started`` then)
syncing         ``AttemptStarted`` of the current run: its next attempt (after a failed
                attempt, the retry); without a current run, the first attempt of a new
                run (no ``RunStarted``: ``last_started`` moves on pre-syncing only)
success         ``RunSucceeded`` (size from the report unless it is unknown)
failed          ``AttemptFailed`` (the report's ``error_msg``); tunasync does not say
                whether a retry follows, so it is final until a ``syncing`` comes
                (success or failed with no run open end a new run of their own: the
                last run stays as it ended)
paused          ``JobPaused``;  disabled: ``JobDisabled``;  none: nothing
==============  ==========================================================================

plus ``JobConfigured`` when the upstream or role changed (provider ``tunasync``) and
``SizeSet`` when a report carries a known size that differs.  The times are those of the
events, i.e. the gateway's clock when the report came, exactly tunasync's manager's rule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypedDict

from mirrorbus.events import (
    AttemptFailed,
    AttemptStarted,
    JobConfigured,
    JobDisabled,
    JobEvent,
    JobPaused,
    JobScheduled,
    JobState,
    RunStarted,
    RunSucceeded,
    SizeSet,
)
from mirrorbus.gateway.wire import MirrorStatusIn

PROVIDER = "tunasync"
"""The provider the view shows for jobs of old workers (their config is not known here)."""

RUN_REASON = "tunasync"
"""A run's reason when an old worker reports it: tunasync does not say why a run started."""

UNKNOWN_SIZES = ("", "unknown")


class _Meta(TypedDict):
    id: str
    at: datetime
    worker: str
    job: str


def status_events(
    state: JobState | None,
    report: MirrorStatusIn,
    worker: str,
    at: datetime,
    new_id: Callable[[], str],
) -> list[JobEvent]:
    """The events that take ``state`` (None: job never seen) to what ``report`` says."""
    job = report.name
    cur = state or JobState(worker=worker, name=job)

    def meta() -> _Meta:
        return {"id": new_id(), "at": at, "worker": worker, "job": job}

    events: list[JobEvent] = []
    if (
        state is None
        or cur.removed
        or (cur.upstream, cur.is_master, cur.provider)
        != (report.upstream, report.is_master, PROVIDER)
    ):
        events.append(
            JobConfigured(
                **meta(),
                upstream=report.upstream,
                interval=cur.interval,
                is_master=report.is_master,
                provider=PROVIDER,
            )
        )
    size = report.size.strip()
    known_size = size not in UNKNOWN_SIZES
    open_run = bool(cur.run_id) and cur.running
    match report.status:
        case "pre-syncing":
            if cur.status != "pre-syncing":
                events.append(RunStarted(**meta(), run_id=new_id(), reason=RUN_REASON))
        case "syncing":
            if cur.run_id and (cur.running or cur.status == "failed"):
                run_id, attempt = cur.run_id, cur.attempt + 1
            else:
                # No pre-syncing before it (lost, or a worker's own quirk): a run of its own,
                # without RunStarted, since tunasync moves last_started on pre-syncing only.
                run_id, attempt = new_id(), 1
            events.append(AttemptStarted(**meta(), run_id=run_id, attempt=attempt))
        case "success":
            # (an end with no run open is a run of its own: the last one stays as it ended)
            run_id, attempt = (cur.run_id, max(cur.attempt, 1)) if open_run else (new_id(), 1)
            events.append(
                RunSucceeded(
                    **meta(),
                    run_id=run_id,
                    attempt=attempt,
                    size=size if known_size else "",
                    exit_code=None,
                )
            )
            known_size = False  # carried by the success itself
        case "failed":
            run_id, attempt = (cur.run_id, max(cur.attempt, 1)) if open_run else (new_id(), 1)
            events.append(
                AttemptFailed(
                    **meta(),
                    run_id=run_id,
                    attempt=attempt,
                    error=report.error_msg,
                    final=True,
                )
            )
        case "paused":
            if cur.status != "paused":
                events.append(JobPaused(**meta()))
        case "disabled":
            if cur.status != "disabled":
                events.append(JobDisabled(**meta()))
        case "none":
            pass
    if known_size and size != cur.size:
        events.append(SizeSet(**meta(), size=size))
    return events


def schedule_event(
    state: JobState, next_at: datetime | None, at: datetime, new_id: Callable[[], str]
) -> JobScheduled | None:
    """``JobScheduled`` if an old worker's schedule list moves the job's next run."""
    if state.next_schedule == next_at:
        return None
    return JobScheduled(id=new_id(), at=at, worker=state.worker, job=state.name, next_at=next_at)
