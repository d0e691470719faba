"""The one error tree of mirrorbus.

Every error a user can meet derives from :class:`MirrorbusError` and carries the facts needed
to act on it in its message (which file, which key, which job, what to do).  Library errors
(nats-py, SQLAlchemy, cryptography, OS errors) are translated into these at the adapter edge,
so callers above the adapters only ever catch ``MirrorbusError`` subclasses.

    MirrorbusError
    ├── ConfigError            a configuration file or option is wrong
    ├── InvalidName            a worker, job or prefix name is outside the naming rule
    ├── PkiError               certificates cannot be made or read
    ├── ServerError            the embedded nats-server cannot start or stop
    │   └── PortInUseError     the port asked for is taken by another program
    ├── BusError               NATS is unreachable or refused us
    │   ├── PermissionDenied   the server refused a subject for our certificate
    │   ├── NotFound           no such stream, consumer or stored message
    │   ├── NoResponders       nobody listens on the subject of a request
    │   └── BusTimeout         no answer within the time given
    ├── CodecError             a message could not be decoded (kept for the dead letters)
    ├── ProjectionError        the SQL view cannot be opened or written
    ├── SourceError            a tunasync status to import cannot be read
    ├── NameInUse              a manager replica's name is held by a running manager
    ├── HookError              a job hook failed: the run ends with "error exec hook ..."
    └── CommandError           a ctl command failed
        ├── UnknownTarget      unknown worker or job
        ├── CommandRejected    the worker answered "rejected: reason"
        └── NoAnswer           nobody answered in time

(``tests/test_errors.py`` checks that this drawing is the tree the classes make.)
"""

from __future__ import annotations

from pathlib import Path


class MirrorbusError(Exception):
    """Base of every error mirrorbus raises on purpose."""

    exit_code: int = 1


class ConfigError(MirrorbusError):
    """A configuration file or option is invalid.

    The message always names the file, and the job and key when there is one, so that one line
    on stderr is enough to fix it::

        worker.toml: mirrors[2] (debian): key 'provider': unknown provider 'ftp'
    """

    exit_code = 2

    warnings: tuple[str, ...] = ()
    """Warnings about the same file found before this error (unknown keys, often the cause:
    a misspelt section leaves a required key missing); the CLI shows them first."""

    def __init__(
        self,
        problem: str,
        *,
        file: Path | str | None = None,
        job: str | None = None,
        key: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = None if file is None else str(file)
        self.job = job
        self.key = key
        parts = []
        if self.file is not None:
            parts.append(self.file)
        if job is not None:
            parts.append(job)
        if key is not None:
            parts.append(f"key '{key}'")
        parts.append(problem)
        super().__init__(": ".join(parts))


class InvalidName(MirrorbusError):
    """A worker, job or prefix name breaks the naming rule, or a subject token is no name's."""


class PkiError(MirrorbusError):
    """A certificate or key cannot be created, read or used."""


class ServerError(MirrorbusError):
    """The embedded nats-server could not be started, or stopped."""


class PortInUseError(ServerError):
    """The port asked for the embedded server is already taken by another program."""


class BusError(MirrorbusError):
    """NATS could not be reached, or refused the connection (TLS, certificate)."""


class PermissionDenied(BusError):
    """The server refused a publish or subscribe for this certificate's identity."""

    exit_code = 3


class NotFound(BusError):
    """The stream, consumer or stored message asked for does not exist (yet)."""


class NoResponders(BusError):
    """Nobody is subscribed to the subject of a request (the server said so at once)."""


class BusTimeout(BusError):
    """The server, or the service asked, did not answer within the time given."""


class CodecError(MirrorbusError):
    """A message could not be decoded; ``reason`` says why (for the dead-letter table)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ProjectionError(MirrorbusError):
    """The SQL view cannot be opened, migrated or written."""


class SourceError(MirrorbusError):
    """A tunasync status to import (a manager's URL or a saved file) cannot be read; the
    message names the URL or file and the item."""

    exit_code = 2


class NameInUse(MirrorbusError):
    """Another running manager holds this manager replica's name (its consumer and view)."""


class HookError(MirrorbusError):
    """A job hook failed; the run ends and reports ``error exec hook <phase>: <message>``."""


class CommandError(MirrorbusError):
    """A control command could not be carried out."""


class UnknownTarget(CommandError):
    """The worker or job named in a command is not known."""


class CommandRejected(CommandError):
    """The worker answered the command with a rejection."""


class NoAnswer(CommandError):
    """No answer came from the worker in time."""
