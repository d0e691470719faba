"""``evolve(state, event) -> state``: the one fold of job events.

The worker uses it to restore its jobs, the manager to project the status view, tests to state
what must happen.  It is pure: no I/O, no clock (times come from the events), no randomness,
so replay and projection agree by construction.

The timestamp rules are tunasync's (docs/tunasync.md §2.8): ``last_started`` on entering
pre-syncing, ``last_update`` on success, ``last_ended`` on success or failure, and a known size
is never replaced by an unknown one.  One fix: ``next_schedule`` is not reset by every status
change, only cleared while the job is running, paused or disabled (it is then truly unscheduled).

    >>> s = evolve(None, RunStarted(id="1", at=t0, worker="w", job="j", run_id="r"))
    >>> s.status
    'pre-syncing'
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from mirrorbus.events.schema import (
    AttemptFailed,
    AttemptStarted,
    CommandAnswered,
    JobConfigured,
    JobDisabled,
    JobEvent,
    JobPaused,
    JobRemoved,
    JobScheduled,
    JobState,
    RunStarted,
    RunSucceeded,
    SizeSet,
)

_replace = msgspec.structs.replace
_UNKNOWN_SIZES = ("", "unknown")  # never replace a known size with these (tunasync §2.8)


def evolve(state: JobState | None, event: JobEvent) -> JobState:
    """Return the job state after ``event``; ``state`` None means the job was never seen."""
    if state is None:
        state = JobState(worker=event.worker, name=event.job)
    match event:
        case RunStarted():
            return _replace(
                state,
                status="pre-syncing",
                last_started=event.at,
                next_schedule=None,
                run_id=event.run_id,
                attempt=0,
                error_msg="",
                exit_code=None,
                removed=False,
            )
        case AttemptStarted():
            return _replace(state, status="syncing", run_id=event.run_id, attempt=event.attempt)
        case RunSucceeded():
            return _replace(
                state,
                status="success",
                last_update=event.at,
                last_ended=event.at,
                size=state.size if event.size in _UNKNOWN_SIZES else event.size,
                error_msg="",
                run_id=event.run_id,
                attempt=event.attempt,
                exit_code=event.exit_code,
            )
        case AttemptFailed():
            return _replace(
                state,
                status="failed",
                last_ended=event.at,
                error_msg=event.error,
                run_id=event.run_id,
                attempt=event.attempt,
                exit_code=event.exit_code,
            )
        case JobScheduled():
            return _replace(state, next_schedule=event.next_at)
        case JobPaused():
            return _replace(state, status="paused", next_schedule=None)
        case JobDisabled():
            return _replace(state, status="disabled", next_schedule=None)
        case JobConfigured():
            return _replace(
                state,
                upstream=event.upstream,
                interval=event.interval,
                is_master=event.is_master,
                provider=event.provider,
                desc=event.desc,
                help=event.help,
                removed=False,
            )
        case SizeSet():
            return _replace(state, size=event.size)
        case JobRemoved():
            return _replace(state, removed=True, next_schedule=None)
        case CommandAnswered():
            return state
    raise TypeError(f"evolve: not a job event: {type(event).__name__}")


def fold(
    events: Iterable[JobEvent], states: dict[str, JobState] | None = None
) -> dict[str, JobState]:
    """Fold many events (of one worker) into a ``{job name: state}`` map, in order."""
    result: dict[str, JobState] = {} if states is None else dict(states)
    for event in events:
        result[event.job] = evolve(result.get(event.job), event)
    return result
