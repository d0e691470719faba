"""Subject and stream names of the bus contract, and the one mapping from names to tokens.

Worker and job names are data: any name tunasync accepts (dots, spaces, ``+``, ``@``,
Unicode, ...) is accepted here too, and is turned into a subject token by one mapping,
:func:`name_token`, wherever a name meets NATS (subjects, consumer names, inbox prefixes,
the users' permissions, certificate subjects, file names derived from them).

**The name rule** (:func:`check_name`): 1 to 255 bytes of UTF-8, no ``/``, no control,
format or line-separator character (Unicode categories Cc, Cf, Cs, Zl, Zp), not ``.`` or
``..``: a name becomes a directory and a file name, and one line of a table.

**The token mapping** (:func:`name_token`, reversed by :func:`token_name`): a name made of
ASCII letters, digits, ``_`` and ``-`` and not starting with ``-`` is its own token, so every
subject, stream, consumer and state directory made before names could hold anything else is
unchanged.  Any other name is taken byte by byte in UTF-8: letters, digits, ``_`` and ``-``
stay, every other byte (and a leading ``-``) becomes ``%`` and two upper-case hex digits::

    >>> name_token("debian")
    'debian'
    >>> name_token("crates.io-index.git")
    'crates%2Eio-index%2Egit'
    >>> name_token("u.sb")
    'u%2Esb'
    >>> name_token("linux stable")
    'linux%20stable'
    >>> name_token("café")
    'caf%C3%A9'
    >>> name_token("100%")
    '100%25'
    >>> name_token("-x")
    '%2Dx'
    >>> token_name("crates%2Eio-index%2Egit")
    'crates.io-index.git'

Why this shape: a token holds only ``[A-Za-z0-9_%-]``, so it never contains ``.`` (the token
separator), ``*`` or ``>`` (wildcards), white space, ``/`` or ``\\`` (nats-server refuses them
in consumer names), nor anything nats.conf, an RFC 2253 certificate subject or a file system
would read specially.  ``%`` itself is escaped, so the mapping is injective and reversible;
a leading ``-`` is escaped so that tokens starting with ``-`` stay free for the bus's own
words (:data:`WORKER_TOKEN`, :data:`ADMIN_TOKEN`).  :func:`token_name` accepts only the one
canonical spelling (upper-case hex, nothing escaped that need not be), so a subject names at
most one name and a permission on a token covers exactly one name: worker ``a`` may publish
on ``evt.a.>``, and ``a.b`` is ``evt.a%2Eb``, another token.

**Lengths.**  A 255-byte name gives a token of up to 765 characters: fine in a subject, too
long for a consumer name (nats-server's limit is 255 bytes), a file name (255 bytes) or a
certificate's common name (64 characters).  There :func:`fit` keeps a token that fits and
otherwise cuts it and appends ``~`` and 32 hex digits of its SHA-256: ``~`` is never in a
token, so a cut token never equals a whole one, and two cut tokens are equal only if their
SHA-256 digests share 128 bits.  The mapping is stable: these rules are part of the bus
contract and change only with a migration.

    >>> s = Subjects("mirrorbus")
    >>> s.job_events("mirrors.example.org", "u.sb")
    'mirrorbus.evt.mirrors%2Eexample%2Eorg.u%2Esb'
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from mirrorbus.errors import InvalidName

_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_PREFIX = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_HEX = frozenset(b"0123456789ABCDEF")
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})

DEFAULT_PREFIX = "mirrorbus"
WORKER_TOKEN = "-worker"
"""Subject token of worker-level commands, in place of a job name (see ``worker_command``)."""
ADMIN_TOKEN = "-admin"
"""Subject token of operators' events in place of a worker name (no name's token starts
with ``-``)."""
MAX_NAME_BYTES = 255
"""A worker or job name's longest UTF-8 encoding (a file name's limit, as in tunasync)."""
MAX_CONSUMER_NAME = 255
"""nats-server's longest consumer name, in bytes (it refuses a longer one)."""
NAME_RULE = (
    "1-255 bytes (UTF-8) of printable characters, without '/' or control characters, "
    "not '.' or '..'"
)
MAX_FILE_TOKEN = 200
"""The longest token put in a file name: 255 bytes less room for what is added around it
(``worker-``, ``.crt``, a temporary file's ``.<pid>.tmp``, SQLite's ``-journal``)."""
_DIGEST_CHARS = 32


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a valid worker or job name, else raise :class:`InvalidName`.

    The rule is tunasync's in practice (see the module docstring): anything printable up to
    255 bytes that can be a directory name.  Dots, spaces, wildcards and Unicode are fine:
    they are escaped by :func:`name_token`, never given to NATS as they are.
    """
    if not isinstance(name, str):
        raise InvalidName(f"{what} {name!r} is not allowed: it must be text ({NAME_RULE})")
    problem = _name_problem(name)
    if problem:
        raise InvalidName(f"{what} {name!r} is not allowed: {problem} (use {NAME_RULE})")
    return name


def _name_problem(name: str) -> str:
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return "it is a directory's own name"
    if "/" in name:
        return "it contains '/'"
    for ch in name:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return f"it contains the control character U+{ord(ch):04X}"
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return "it is not valid Unicode"
    if size > MAX_NAME_BYTES:
        return f"it is {size} bytes long in UTF-8"
    return ""


def check_token(value: str, what: str = "name") -> str:
    """Return ``value`` if it can be used as it is as one subject token or consumer name.

    For the bus's own words (query names, a projection's consumer), not for worker and job
    names: those go through :func:`name_token`.
    """
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise InvalidName(
            f"{what} {value!r} is not allowed: use 1-64 letters, digits, '_' or '-' "
            "(no dots, spaces, slashes or wildcards; not starting with '-')"
        )
    return value


def name_token(name: str, what: str = "name") -> str:
    """The subject token of a worker or job name (see the module docstring); checks the name."""
    if isinstance(name, str) and len(name) <= MAX_NAME_BYTES and _PLAIN.fullmatch(name):
        return name  # the common case, on every append: no need to look at each character
    check_name(name, what)
    data = name.encode()
    out = [
        chr(b) if b in _SAFE and not (i == 0 and b == 0x2D) else f"%{b:02X}"
        for i, b in enumerate(data)
    ]
    return "".join(out)


def token_name(token: str, what: str = "name") -> str:
    """The name a token stands for: the inverse of :func:`name_token`.

    Raises :class:`InvalidName` unless ``token`` is exactly what :func:`name_token` makes of
    some name, so that a subject can only ever be read back as one name.
    """
    if not isinstance(token, str) or not token.isascii():
        raise InvalidName(f"{what} token {token!r} is not a name's token")
    raw = token.encode()
    data = bytearray()
    i = 0
    while i < len(raw):
        b = raw[i]
        if b in _SAFE:
            data.append(b)
            i += 1
        elif b == 0x25 and i + 2 < len(raw) and raw[i + 1] in _HEX and raw[i + 2] in _HEX:
            data.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            raise InvalidName(f"{what} token {token!r} is not a name's token")
    try:
        name = data.decode()
        if name_token(name, what) == token:
            return name
    except (UnicodeDecodeError, InvalidName):
        pass
    raise InvalidName(f"{what} token {token!r} is not a name's token")


def fit(token: str, limit: int) -> str:
    """``token`` if it has at most ``limit`` characters, else a cut of it ending in ``~`` and
    32 hex digits of its SHA-256 (see "Lengths" in the module docstring).

    >>> fit("short", 64)
    'short'
    >>> len(fit("x" * 300, 255))
    255
    """
    if len(token) <= limit:
        return token
    if limit < _DIGEST_CHARS + 1:
        raise ValueError(f"limit {limit} leaves no room for the digest")
    digest = hashlib.sha256(token.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{token[: limit - _DIGEST_CHARS - 1]}~{digest}"


def file_token(name: str, what: str = "name") -> str:
    """The token of ``name`` as part of a file name (a state file, a certificate): the token,
    cut by :func:`fit` to :data:`MAX_FILE_TOKEN`."""
    return fit(name_token(name, what), MAX_FILE_TOKEN)


def _worker(name: str) -> str:
    return name_token(name, "worker name")


def _job(name: str) -> str:
    return name_token(name, "job name")


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
        return f"{self.prefix}.evt.{_worker(worker)}"

    def job_events(self, worker: str, job: str) -> str:
        return f"{self.worker_events(worker)}.{_job(job)}"

    def worker_job_events(self, worker: str) -> str:
        """Wildcard over every job of one worker."""
        return f"{self.worker_events(worker)}.>"

    def job_command(self, worker: str, job: str) -> str:
        return f"{self.prefix}.cmd.{_worker(worker)}.{_job(job)}"

    def worker_command(self, worker: str) -> str:
        """Commands to the worker itself (``reload``).

        The last token, ``-worker``, is never a job's token (no name's token starts with
        ``-``), so worker commands share the job commands' stream, consumer and permission
        (``cmd.<worker>.>``): one consumer per worker, whose filter the server can enforce.
        """
        return f"{self.prefix}.cmd.{_worker(worker)}.{WORKER_TOKEN}"

    def worker_commands(self, worker: str) -> str:
        """Wildcard over every command of one worker (its command consumer's filter)."""
        return f"{self.prefix}.cmd.{_worker(worker)}.>"

    def logs(self, worker: str) -> str:
        """Requests for job logs, answered by the worker itself (request/reply)."""
        return f"{self.prefix}.logs.{_worker(worker)}"

    def snapshot(self, worker: str) -> str:
        return f"{self.prefix}.snap.{_worker(worker)}"

    def api(self, query: str) -> str:
        """Request/reply query served by the manager, e.g. ``api("jobs")``."""
        return f"{self.prefix}.api.{check_token(query, 'query')}"

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
        return f"{self.replica_all_api(replica)[:-1]}{check_token(query, 'query')}"

    def replica_all_api(self, replica: str) -> str:
        """Wildcard over every query of one replica."""
        return f"{self.prefix}.replica.{check_token(replica, 'manager name')}.*"

    @property
    def all_replica_api(self) -> str:
        return f"{self.prefix}.replica.>"

    def every_replica_api(self, query: str) -> str:
        """The query ``query`` asked of every manager replica at once (no queue group): a
        client's hedge when the replica its first request went to did not answer."""
        return f"{self.prefix}.replicas.{check_token(query, 'query')}"

    @property
    def every_replica_all_api(self) -> str:
        """Wildcard over :meth:`every_replica_api` (each replica subscribes to it)."""
        return f"{self.prefix}.replicas.*"

    @property
    def all_replica_pings(self) -> str:
        """Every replica's ``ping`` (a starting replica asks whether its name is held)."""
        return f"{self.prefix}.replica.*.ping"

    def heartbeat(self, worker: str) -> str:
        """Core-NATS liveness beat (may be lost; never stored)."""
        return f"{self.prefix}.hb.{_worker(worker)}"

    @property
    def all_heartbeats(self) -> str:
        return f"{self.prefix}.hb.*"

    def names_in(self, subject: str) -> tuple[str, str, str | None]:
        """``(kind, worker, job)`` of a subject built here, names as written: ``kind`` is
        ``evt``, ``cmd``, ``snap``, ``hb`` or ``logs``; ``job`` is None for the worker's own
        events and commands.

        The one way back from a subject to names.  Raises :class:`InvalidName` for anything
        else, the operators' events (``evt.-admin``) included.

        >>> Subjects().names_in("mirrorbus.evt.mirrors%2Eexample%2Eorg.linux%20stable")
        ('evt', 'mirrors.example.org', 'linux stable')
        """
        head, _, rest = subject.partition(".") if isinstance(subject, str) else ("", "", "")
        kind, _, rest = rest.partition(".")
        tokens = rest.split(".") if rest else []
        # A command may carry its issuer's token last (see ``issued_by``).
        arity = {"evt": (1, 2), "cmd": (1, 2, 3), "snap": (1,), "hb": (1,), "logs": (1,)}
        if head != self.prefix or len(tokens) not in arity.get(kind, ()):
            raise InvalidName(f"{subject!r} is not a {self.prefix} subject with names in it")
        worker = token_name(tokens[0], "worker name")
        if len(tokens) == 1:
            return kind, worker, None
        if kind == "cmd" and tokens[1] == WORKER_TOKEN:
            return kind, worker, None
        return kind, worker, token_name(tokens[1], "job name")

    def operator_events(self, token: str) -> str:
        """The operators' events of one operator (``evt.-admin.<token>``): only that
        operator's user may publish there, so the view takes the operator from the subject."""
        return f"{self.admin_events}.{check_token(token, 'issuer')}"

    @staticmethod
    def issued_by(command: str, issuer: str) -> str:
        """The command subject ``command`` with its issuer's token last (``admin``,
        ``admin-alice``, ``gateway``): each operator's user may publish commands only under its
        own token, so the worker records who sent a command from what the server enforced,
        not from what the command says."""
        return f"{command}.{check_token(issuer, 'issuer')}"

    @staticmethod
    def issuer_in(subject: str, command: str) -> str | None:
        """The issuer's token of a command that arrived on ``subject``, sent to ``command``;
        None if it came without one (or on another subject)."""
        if not subject.startswith(f"{command}."):
            return None
        token = subject[len(command) + 1 :]
        try:
            return check_token(token, "issuer")
        except InvalidName:
            return None

    # -- identities ----------------------------------------------------------------------
    @staticmethod
    def worker_inbox(worker: str) -> str:
        """Inbox prefix a worker connects with, so that its subscribe permission is exact."""
        return f"_INBOX_{_worker(worker)}"

    @staticmethod
    def role_inbox(role: str) -> str:
        """Inbox prefix of a client of ``role`` (manager, admin, reader, gateway): each role
        may subscribe only to its own, so no client reads another role's replies.  The
        ``-`` after ``_INBOX_`` keeps it apart from every worker's (no worker's token starts
        with ``-``)."""
        return f"_INBOX_-{role}"

    @staticmethod
    def worker_consumer(worker: str) -> str:
        """Name of the worker's command consumer; one exact token per worker, cut
        to nats-server's limit by :func:`fit` (the filter still holds the whole token)."""
        return fit(_worker(worker), MAX_CONSUMER_NAME)

    @staticmethod
    def manager_consumer(replica: str) -> str:
        """Name of manager replica ``replica``'s durable consumer on the event stream: each
        replica reads the whole log at its own pace into its own view.

        It starts with ``-``, which no worker's token does (:func:`name_token` escapes a
        leading ``-``): a worker, whose consumers are named by its token, can never name,
        pull from or delete a replica's consumer (a worker called ``manager-a`` included).
        """
        return f"-manager-{check_token(replica, 'manager name')}"

    @property
    def gateway_consumer(self) -> str:
        """Name of the tunasync gateway's command consumer (commands for the old workers it
        speaks for; one for every gateway of the site, each command taken by one of them).
        Starts with ``-``, which no worker's token does: a worker named ``gateway`` has its
        own command consumer."""
        return "-gateway"
