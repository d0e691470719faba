"""The typed messages of the bus: job events, worker events, commands and snapshots.

Every message is a frozen, keyword-only msgspec Struct tagged with its ``type``; each carries a
schema version ``v``.  Times are timezone-aware UTC ``datetime`` inside and RFC 3339 strings on
the wire; durations are whole seconds on the wire.  Unknown fields are ignored on decode so an
old reader can read a newer writer's message of the same type and version.

Job events (subject ``<prefix>.evt.<worker>.<job>``) describe one job's life.  The statuses
they lead to are tunasync's (docs/tunasync.md §2.1); which event leads to which status is decided
in one place only, :func:`mirrorbus.events.state.evolve`.

Why separate ``RunStarted`` (pre-syncing) and ``AttemptStarted`` (syncing): tunasync reports
both, status pages show both, and a run holds one concurrency slot across all its attempts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

UTCTime = Annotated[datetime, msgspec.Meta(tz=True)]
"""A timezone-aware time; a naive time on the wire is refused rather than guessed."""

Status = Literal["none", "pre-syncing", "syncing", "success", "failed", "paused", "disabled"]
STATUSES: tuple[Status, ...] = (
    "none",
    "failed",
    "success",
    "syncing",
    "pre-syncing",
    "paused",
    "disabled",
)

Verb = Literal["start", "stop", "disable", "restart", "ping", "set-size", "reload"]
VERBS: tuple[Verb, ...] = ("start", "stop", "disable", "restart", "ping", "set-size", "reload")
JOB_VERBS: tuple[Verb, ...] = ("start", "stop", "disable", "restart", "ping", "set-size")
"""Verbs about one job; ``reload`` is about the worker (its ``job`` is "")."""


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every message has: its id (the ``Nats-Msg-Id``), its time and schema version."""

    id: str
    at: UTCTime
    v: int = 1


# -- job events -----------------------------------------------------------------------------


class JobEvent(Message, frozen=True, kw_only=True):
    worker: str
    job: str


class JobConfigured(JobEvent, frozen=True, kw_only=True, tag="job.configured"):
    """The worker (re)loaded this job's configuration; carries what the view shows of it.

    v2 added ``provider``; v1 messages are upcast with provider "command" (the only provider
    the first release ran).  ``desc`` and ``help`` (what mirrorz.json shows of the job) came
    later as optional fields: a message without them reads as "", and a reader that predates
    them ignores them, so the version stayed 2.
    """

    v: int = 2
    upstream: str = ""
    interval: int = 0  # seconds
    is_master: bool = True
    provider: str = "command"
    desc: str = ""
    help: str = ""


class JobScheduled(JobEvent, frozen=True, kw_only=True, tag="job.scheduled"):
    """The job's next automatic run; ``next_at`` None means it is not scheduled."""

    next_at: UTCTime | None


class RunStarted(JobEvent, frozen=True, kw_only=True, tag="job.run-started"):
    """A run took its concurrency slot (or bypassed it with ``force``): status pre-syncing."""

    run_id: str
    force: bool = False
    reason: str = "schedule"  # schedule | start | restart | recover


class AttemptStarted(JobEvent, frozen=True, kw_only=True, tag="job.attempt-started"):
    """Attempt ``attempt`` (1-based) of a run is executing: status syncing."""

    run_id: str
    attempt: int
    log_file: str = ""


class RunSucceeded(JobEvent, frozen=True, kw_only=True, tag="job.succeeded"):
    run_id: str
    attempt: int
    size: str = ""  # "" when the run did not tell
    exit_code: int | None = 0


class AttemptFailed(JobEvent, frozen=True, kw_only=True, tag="job.failed"):
    """An attempt failed; ``final`` when no further attempt of this run follows.

    ``exit_code`` is None when the process never ran or was killed; ``error`` is the text a
    user sees (``"killed by manager"``, ``"timeout after 7s"``, ``"interrupted"``...).
    """

    run_id: str
    attempt: int
    error: str
    exit_code: int | None = None
    final: bool = True


class JobPaused(JobEvent, frozen=True, kw_only=True, tag="job.paused"):
    cmd_id: str = ""


class JobDisabled(JobEvent, frozen=True, kw_only=True, tag="job.disabled"):
    cmd_id: str = ""


MAX_SIZE_TEXT = 64
"""Longest size text a job shows (the view's column): a worker refuses a longer one."""


class SizeSet(JobEvent, frozen=True, kw_only=True, tag="job.size-set"):
    """An operator set the job's size (``ctl set-size``), e.g. from a cron job's ``du``."""

    size: str
    cmd_id: str = ""


class JobRemoved(JobEvent, frozen=True, kw_only=True, tag="job.removed"):
    """The job left the worker's configuration; it leaves the status view."""


class CommandAnswered(JobEvent, frozen=True, kw_only=True, tag="cmd.answered"):
    """The worker's answer to a command about one of its jobs (an answer that names no known
    job is a :class:`WorkerAnswered`)."""

    cmd_id: str
    verb: str
    accepted: bool
    message: str = ""
    issuer: str = ""


# -- worker events --------------------------------------------------------------------------


class WorkerEvent(Message, frozen=True, kw_only=True):
    worker: str


class WorkerStarted(WorkerEvent, frozen=True, kw_only=True, tag="worker.started"):
    """A worker started (or, with ``url``, an unmodified tunasync worker registered through
    the gateway: ``url`` is where it takes tunasync's commands; "" for a mirrorbus worker,
    which takes them from the bus)."""

    version: str = ""
    hostname: str = ""
    pid: int = 0
    jobs: tuple[str, ...] = ()
    concurrent: int = 0
    url: str = ""


class WorkerStopped(WorkerEvent, frozen=True, kw_only=True, tag="worker.stopped"):
    reason: str = ""


class WorkerAnswered(WorkerEvent, frozen=True, kw_only=True, tag="worker.answered"):
    """Answer to a command that names no known job of this worker."""

    cmd_id: str
    verb: str
    accepted: bool
    message: str = ""
    job: str = ""
    issuer: str = ""


# -- admin events -----------------------------------------------------------------------------


class AdminEvent(Message, frozen=True, kw_only=True):
    """An operator's change to the status view (not to any job), on ``<prefix>.evt.-admin``.

    Jobs' states are only ever told by their workers; these only hide records from the view,
    as tunasync's ``rm-worker`` and ``flush`` delete them from its database.  ``by`` is the
    operator's certificate subject.
    """

    by: str = ""


class WorkerForgotten(AdminEvent, frozen=True, kw_only=True, tag="admin.worker-removed"):
    """``ctl rm-worker``: the worker's record leaves the view (its jobs stay, as in tunasync);
    it comes back with the worker's next event."""

    worker: str


class DisabledFlushed(AdminEvent, frozen=True, kw_only=True, tag="admin.disabled-flushed"):
    """``ctl flush``: every job disabled at this point leaves the view (until it runs again)."""


class CommandSent(AdminEvent, frozen=True, kw_only=True, tag="admin.command-sent"):
    """A command was sent (appended by the ctl, before the command itself, on
    ``<prefix>.evt.-admin.<token>``, the only such subject the operator's user may publish
    on).  From the first one in the log on, the view records a command's answer only for a
    command sent so, with the issuer the token names: a worker cannot answer a command nobody
    sent, nor say who sent it."""

    cmd_id: str
    worker: str
    job: str = ""
    verb: str = ""


Event = (
    JobConfigured
    | JobScheduled
    | RunStarted
    | AttemptStarted
    | RunSucceeded
    | AttemptFailed
    | JobPaused
    | JobDisabled
    | JobRemoved
    | SizeSet
    | CommandAnswered
    | WorkerStarted
    | WorkerStopped
    | WorkerAnswered
    | WorkerForgotten
    | DisabledFlushed
    | CommandSent
)
JOB_EVENT_TYPES: tuple[type[JobEvent], ...] = (
    JobConfigured,
    JobScheduled,
    RunStarted,
    AttemptStarted,
    RunSucceeded,
    AttemptFailed,
    JobPaused,
    JobDisabled,
    JobRemoved,
    SizeSet,
    CommandAnswered,
)


# -- commands -------------------------------------------------------------------------------


class Command(Message, frozen=True, kw_only=True, tag="command"):
    """A request to a worker about one job (subject ``<prefix>.cmd.<worker>.<job>``), or about
    the worker itself (``reload``, ``job`` "", subject ``<prefix>.cmd.<worker>.-worker``).

    ``expires_at``: a worker that receives the command later answers "expired" instead of
    acting, so that a command given to an offline worker never fires hours later.

    ``args``: the arguments ``tunasynctl`` sent with it (through the gateway), carried as
    given to an old tunasync worker, which never reads them either; None when none came.
    """

    verb: Verb
    worker: str
    job: str
    force: bool = False
    size: str = ""  # set-size only
    expires_at: UTCTime
    issuer: str = ""
    args: tuple[str, ...] | None = None


# -- snapshots ------------------------------------------------------------------------------


class JobState(msgspec.Struct, frozen=True, kw_only=True):
    """What is known of one job: the fold of its events (see ``evolve``).

    Times are None when never happened (tunasync's zero time).  ``run_id``/``attempt`` name the
    current run while ``running``, and the last run afterwards.
    """

    worker: str
    name: str
    status: Status = "none"
    is_master: bool = True
    upstream: str = ""
    provider: str = ""
    interval: int = 0
    last_update: UTCTime | None = None  # last success
    last_started: UTCTime | None = None  # last entry into pre-syncing
    last_ended: UTCTime | None = None  # last success or final failure
    next_schedule: UTCTime | None = None
    size: str = ""
    error_msg: str = ""
    run_id: str = ""
    attempt: int = 0
    exit_code: int | None = None
    removed: bool = False
    desc: str = ""
    help: str = ""

    @property
    def running(self) -> bool:
        return self.status in ("pre-syncing", "syncing")


class WorkerSnapshot(Message, frozen=True, kw_only=True, tag="worker.snapshot"):
    """A worker's job states as of stream sequence ``seq`` (every event of it up to ``seq``).

    Restore reads the last snapshot then only the events after ``seq``, so its cost does not
    grow with the length of history.
    """

    worker: str
    seq: int
    jobs: tuple[JobState, ...]
