"""Subject and stream names of the bus contract, and the name rules that keep them safe.

Worker and job names become subject tokens, consumer names and inbox prefixes, so they are
checked here once, before anything is built from them::

    >>> s = Subjects("mirrorbus")
    >>> s.job_events("w1", "debian")
    'mirrorbus.evt.w1.debian'
    >>> s.job_events("w1", "a.b")
    Traceback (most recent call last):
    mirrorbus.errors.InvalidName: job name 'a.b' ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirrorbus.errors import InvalidName

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_PREFIX = re.compile(r"[a-z][a-z0-9_-]{0,31}")

DEFAULT_PREFIX = "mirrorbus"
WORKER_TOKEN = "-worker"
ADMIN_TOKEN = "-admin"
"""Subject token of operators' events in place of a worker name (workers cannot be named so)."""
"""Subject token of worker-level commands, in place of a job name (see ``worker_command``)."""


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a safe subject token, else raise :class:`InvalidName`.

    Allowed: ASCII letters, digits, ``_`` and ``-`` (not first), 1 to 64 characters.
    Dots, wildcards, spaces and slashes are refused because they would change the meaning of
    a subject or a consumer name.
    """
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise InvalidName(
            f"{what} {name!r} is not allowed: use 1-64 letters, digits, '_' or '-' "
            "(no dots, spaces, slashes or wildcards; not starting with '-')"
        )
    return name


@dataclass(frozen=True, slots=True)
class Subjects:
    """Builds every subject, stream and consumer name from one prefix (default ``mirrorbus``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise InvalidName(
                f"subject prefix {self.prefix!r} is not allowed: use lower-case letters, "
                "digits, '_' or '-', starting with a letter"
            )

    # -- streams -------------------------------------------------------------------------
    @property
    def _stream_base(self) -> str:
        return self.prefix.upper()

    @property
    def evt_stream(self) -> str:
        """Append-only job and worker events."""
        return f"{self._stream_base}_EVT"

    @property
    def cmd_stream(self) -> str:
        """Commands to workers; they expire."""
        return f"{self._stream_base}_CMD"

    @property
    def snap_stream(self) -> str:
        """Worker snapshots, one (the last) per worker."""
        return f"{self._stream_base}_SNAP"

    # -- subjects ------------------------------------------------------------------------
    @property
    def all_events(self) -> str:
        return f"{self.prefix}.evt.>"

    @property
    def all_worker_events(self) -> str:
        """Every worker's own events (started, stopped, answers), and the operators': one
        token after ``evt``, none of the job events."""
        return f"{self.prefix}.evt.*"

    @property
    def all_commands(self) -> str:
        return f"{self.prefix}.cmd.>"

    @property
    def all_snapshots(self) -> str:
        return f"{self.prefix}.snap.>"

    @property
    def admin_events(self) -> str:
        """Operators' view changes (``rm-worker``, ``flush``); on the event stream, so a
        rebuild replays them too."""
        return f"{self.prefix}.evt.{ADMIN_TOKEN}"

    def worker_events(self, worker: str) -> str:
        """Events about the worker itself (started, stopped, answers to worker commands)."""
        return f"{self.prefix}.evt.{check_name(worker, 'worker name')}"

    def job_events(self, worker: str, job: str) -> str:
        return f"{self.worker_events(worker)}.{check_name(job, 'job name')}"

    def worker_job_events(self, worker: str) -> str:
        """Wildcard over every job of one worker."""
        return f"{self.worker_events(worker)}.>"

    def job_command(self, worker: str, job: str) -> str:
        return (
            f"{self.prefix}.cmd.{check_name(worker, 'worker name')}.{check_name(job, 'job name')}"
        )

    def worker_command(self, worker: str) -> str:
        """Commands to the worker itself (``reload``).

        The last token, ``-worker``, can never be a job name (job names cannot start with
        ``-``), so worker commands share the job commands' stream, consumer and permission
        (``cmd.<worker>.>``): one consumer per worker, whose filter the server can enforce.
        """
        return f"{self.prefix}.cmd.{check_name(worker, 'worker name')}.{WORKER_TOKEN}"

    def worker_commands(self, worker: str) -> str:
        """Wildcard over every command of one worker (its command consumer's filter)."""
        return f"{self.prefix}.cmd.{check_name(worker, 'worker name')}.>"

    def logs(self, worker: str) -> str:
        """Requests for job logs, answered by the worker itself (request/reply)."""
        return f"{self.prefix}.logs.{check_name(worker, 'worker name')}"

    def snapshot(self, worker: str) -> str:
        return f"{self.prefix}.snap.{check_name(worker, 'worker name')}"

    def api(self, query: str) -> str:
        """Request/reply query served by the manager, e.g. ``api("jobs")``."""
        return f"{self.prefix}.api.{check_name(query, 'query')}"

    @property
    def all_api(self) -> str:
        return f"{self.prefix}.api.>"

    @property
    def manager_queue(self) -> str:
        """Queue group of the manager replicas on :attr:`all_api`: each query goes to one
        replica that is alive, whichever."""
        return f"{self.prefix}-managers"

    def replica_api(self, replica: str, query: str) -> str:
        """The query ``query`` asked of the one manager replica ``replica`` (not of the queue
        group): its presence check, and a read of that replica's own view."""
        return f"{self.replica_all_api(replica)[:-1]}{check_name(query, 'query')}"

    def replica_all_api(self, replica: str) -> str:
        """Wildcard over every query of one replica."""
        return f"{self.prefix}.replica.{check_name(replica, 'manager name')}.*"

    @property
    def all_replica_api(self) -> str:
        return f"{self.prefix}.replica.>"

    @property
    def all_replica_pings(self) -> str:
        """Every replica's ``ping`` (a starting replica asks whether its name is held)."""
        return f"{self.prefix}.replica.*.ping"

    def heartbeat(self, worker: str) -> str:
        """Core-NATS liveness beat (may be lost; never stored)."""
        return f"{self.prefix}.hb.{check_name(worker, 'worker name')}"

    @property
    def all_heartbeats(self) -> str:
        return f"{self.prefix}.hb.*"

    # -- identities ----------------------------------------------------------------------
    @staticmethod
    def worker_inbox(worker: str) -> str:
        """Inbox prefix a worker connects with, so that its subscribe permission is exact."""
        return f"_INBOX_{check_name(worker, 'worker name')}"

    @staticmethod
    def worker_consumer(worker: str) -> str:
        """Name of the worker's consumers (command, replay); one exact token per worker."""
        return check_name(worker, "worker name")

    @staticmethod
    def manager_consumer(replica: str) -> str:
        """Name of manager replica ``replica``'s durable consumer on the event stream: each
        replica reads the whole log at its own pace into its own view."""
        return f"manager-{check_name(replica, 'manager name')}"

    @property
    def gateway_consumer(self) -> str:
        """Name of the tunasync gateway's consumers (commands for the old workers it speaks
        for, and the worker events it follows to know them)."""
        return "gateway"
