"""nats-server configuration for a mirrorbus site: TLS with certificate-mapped users.

The server config is where the bus contract's *authority* lives: every client certificate maps
to one user (``verify_and_map``) and each user may publish and subscribe to exactly what its
role needs.  Everything is rendered from :class:`~mirrorbus.events.subjects.Subjects`, so a
different prefix gives a consistent config, never a hand-edited one that drifts.

Roles (prefix ``mirrorbus``, worker ``W``; ``W`` here is the worker name's subject token,
:func:`~mirrorbus.events.subjects.name_token`, so ``evt.W.>`` of worker ``a`` never covers
worker ``a.b``, whose token is ``a%2Eb``):

- **worker W** appends its own events (``evt.W``, ``evt.W.>``), writes its snapshot and
  heartbeat, restores by reading the log with batched direct gets, consumes its commands
  through the consumer ``W`` on the command stream (made by the manager; the worker pulls and
  acknowledges), and reads its last snapshot with a direct get.  Its replies come on
  ``_INBOX_W.>`` only, so it cannot see another client's answers.  It cannot publish
  commands, nor anything of another worker.
- **admin** publishes commands and queries and reads the event log and job logs; it may never
  forge an event, snapshot or heartbeat (explicit deny) nor administer a stream or consumer.
- **reader** may query (``api.>``), request job logs (``logs.>``) and read the event log and
  the snapshots (direct gets, core subscriptions); nothing else.
- **manager** creates and updates the streams at its start (the only role that may; the
  streams deny deleting and purging to everyone), is the only role that makes consumers (the
  workers' command consumers), reads events and answers queries on ``api.>`` and, as one
  replica, on ``replica.<name>.*`` (``allow_responses``: it may publish only to the reply
  subject of a request it received, and ``replica.*.ping`` to find whether its name is held).

No client but the manager makes consumers: a consumer's maker chooses where the server
delivers its messages (``deliver_subject``), and no permission can restrict that choice, so a
consumer right would let a reader deliver events onto a worker's heartbeat subject or a
worker deliver onto another's command subject.  Each role subscribes only to its own inbox
prefix (:meth:`~mirrorbus.events.subjects.Subjects.role_inbox`, a worker's
``_INBOX_W``).
- **gateway** (tunasync's HTTP API for old workers and tools) appends the events of workers
  that have *no* certificate of their own (``evt.*``, ``evt.*.>`` with an explicit deny of
  every worker certificate's subjects, so it can never speak for a native worker: the deny
  list is rendered from the issued certificates, so re-render after ``certs issue worker``),
  the operators' view changes (``rm-worker``, ``flush``) and commands; it consumes commands
  through its own consumer to forward them to the old workers.

There is no default user and no ``default_permissions``: a certificate from the CA that maps
to no listed user is refused at connect time.

Run ``python -m mirrorbus.host.natsconf > nats.conf`` to regenerate the repository's reference
config (a test checks that the committed file is what this module produces).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mirrorbus.errors import ConfigError
from mirrorbus.events.codec import MAX_ANSWER_PARTS
from mirrorbus.events.subjects import Subjects, check_name
from mirrorbus.host import pki as pki_module
from mirrorbus.host.pki import ROUTE_IDENTITY, identity
from mirrorbus.host.server import DEFAULT_PORT

__all__ = [
    "REFERENCE_WORKER",
    "ClusterBlock",
    "Permissions",
    "gateway_permissions",
    "render_authorization",
    "render_reference_config",
    "render_server_config",
    "role_permissions",
]

TLS_HANDSHAKE_TIMEOUT = 2.0  # seconds; the server's default 0.5 s is tight on a loaded host


@dataclass(frozen=True, slots=True)
class Permissions:
    """What one user may do, in nats-server's own terms."""

    publish_allow: tuple[str, ...]
    subscribe_allow: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    allow_responses: bool = False
    max_responses: int = 1
    """Messages it may send to one request's reply subject (an answer in parts needs more)."""
    comment: str = field(default="", compare=False)


def _worker_permissions(s: Subjects, w: str) -> Permissions:
    evt, cmd, snap = s.evt_stream, s.cmd_stream, s.snap_stream
    c = s.worker_consumer(w)
    return Permissions(
        comment=f"worker {w}: appends its own events, reads the log, consumes its own commands",
        publish_allow=(
            s.worker_events(w),
            s.worker_job_events(w),
            s.snapshot(w),
            s.heartbeat(w),
            # Its restore reads the log by sequence (filtered to its own subjects by the
            # request, which the server cannot restrict: a worker may read the log as a reader
            # may).  No consumer of its own: a consumer's maker chooses where it delivers.
            f"$JS.API.DIRECT.GET.{evt}",
            f"$JS.API.STREAM.INFO.{evt}",
            # Its command consumer (made by the manager, filtered to its commands): pull, ack.
            f"$JS.API.CONSUMER.INFO.{cmd}.{c}",
            f"$JS.API.CONSUMER.MSG.NEXT.{cmd}.{c}",
            f"$JS.ACK.{cmd}.{c}.>",
            # Its last snapshot (one per subject), read without a consumer.
            f"$JS.API.DIRECT.GET.{snap}.{s.snapshot(w)}",
        ),
        # Its log requests, answered on the requester's inbox (allow_responses).
        subscribe_allow=(f"{s.worker_inbox(w)}.>", s.logs(w)),
        allow_responses=True,
    )


def _log_reading(s: Subjects) -> tuple[str, ...]:
    """Reading the event log and the workers' snapshots, without a consumer (the reader's,
    the admin's): stream info, batched direct gets, and the snapshots a view is seeded from
    when the log starts after its oldest events (its maximum age)."""
    evt, snap = s.evt_stream, s.snap_stream
    return (
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{evt}",
        f"$JS.API.DIRECT.GET.{evt}",
        f"$JS.API.STREAM.INFO.{snap}",
        f"$JS.API.STREAM.MSG.GET.{snap}",
        f"$JS.API.DIRECT.GET.{snap}",
        f"$JS.API.DIRECT.GET.{snap}.>",
    )


def _streams(s: Subjects) -> tuple[str, str, str]:
    return (s.evt_stream, s.cmd_stream, s.snap_stream)


def _manager_permissions(s: Subjects) -> Permissions:
    """The manager: the one administrator of our streams (create, update at its start; no
    client may delete or purge them), the only one that makes consumers, and the query
    service.  Every right is spelled out per stream: ``$JS.API.>`` would also allow
    deleting a stream or making one that republishes into the event subjects."""
    p = s.prefix
    evt = s.evt_stream
    return Permissions(
        comment="manager: administers the streams, projects events, answers queries",
        publish_allow=(
            "$JS.API.INFO",
            *(
                f"$JS.API.STREAM.{verb}.{stream}"
                for stream in _streams(s)
                for verb in ("CREATE", "UPDATE", "INFO")
            ),
            # Consumers on the event stream (any name: every manager is trusted alike); it
            # reads the log by sequence, and deletes the consumers older versions left.
            f"$JS.API.CONSUMER.CREATE.{evt}",
            f"$JS.API.CONSUMER.CREATE.{evt}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{evt}.*",
            f"$JS.API.CONSUMER.DELETE.{evt}.*",
            f"$JS.API.CONSUMER.INFO.{evt}.*",
            f"$JS.ACK.{evt}.>",
            # The workers' command consumers (a worker only pulls from and acks its own).
            f"$JS.API.CONSUMER.CREATE.{s.cmd_stream}.>",
            f"$JS.API.CONSUMER.DELETE.{s.cmd_stream}.*",
            f"$JS.API.CONSUMER.INFO.{s.cmd_stream}.*",
            # The log and the workers' snapshots, read without a consumer.
            f"$JS.API.DIRECT.GET.{evt}",
            f"$JS.API.DIRECT.GET.{s.snap_stream}",
            f"$JS.API.DIRECT.GET.{s.snap_stream}.>",
            f"$JS.API.STREAM.MSG.GET.{s.snap_stream}",
            # A replica asks whether its name is held before it takes the name's consumer,
            # and, when it starts behind, whether other replicas answer meanwhile.
            s.all_replica_pings,
            s.every_replica_api("ping"),
        ),
        allow_responses=True,
        # An answer bigger than the server's max_payload goes in parts (Bus.respond).
        max_responses=MAX_ANSWER_PARTS,
        subscribe_allow=(
            f"{s.role_inbox('manager')}.>",
            f"{p}.api.>",
            s.all_replica_api,
            s.every_replica_all_api,
            f"{p}.evt.>",
            f"{p}.hb.>",
        ),
    )


def role_permissions(subjects: Subjects, role: str, name: str | None = None) -> Permissions:
    """The permissions of ``role`` (and worker ``name``) under ``subjects``' prefix."""
    s = subjects
    p = s.prefix
    if role == "worker":
        if name is None:
            raise ConfigError("role 'worker' needs a worker name")
        return _worker_permissions(s, check_name(name, "worker name"))
    if role == "admin":
        return Permissions(
            comment="admin: sends commands and queries, reads the log and the job logs; "
            "never forges events, never administers streams or consumers",
            # Of the event subjects only its own operator subject (evt.-admin.<token>: its
            # record of each command it sends, rm-worker, flush): anything not allowed is
            # refused, so no job or worker event can be forged, and the subject names who
            # wrote it.  No stream or consumer API: only the manager creates and updates the
            # streams and makes consumers, and nobody deletes or purges.
            publish_allow=(
                # Commands under its own issuer token only (Subjects.issued_by): the workers
                # record who sent a command from the subject the server let through.
                f"{p}.cmd.*.*.admin",
                f"{p}.api.>",
                s.all_replica_api,
                s.every_replica_all_api,
                # Its own events: the record of each command it sends (the view's proof it
                # was sent) and its view changes (rm-worker, flush).
                s.operator_events("admin"),
                f"{p}.logs.>",
                *_log_reading(s),
                f"$JS.API.STREAM.INFO.{s.cmd_stream}",
                # The last event of a subject: where a command's answer is stored (the ctl
                # then reads its own write from any manager replica).
                f"$JS.API.DIRECT.GET.{s.evt_stream}.>",
            ),
            publish_deny=(f"{p}.snap.>", f"{p}.hb.>"),
            subscribe_allow=(f"{s.role_inbox('admin')}.>", f"{p}.evt.>", f"{p}.hb.>"),
        )
    if role == "reader":
        return Permissions(
            comment="reader: queries, reads the log and the job logs; publishes nothing else",
            publish_allow=(
                f"{p}.api.>",
                s.all_replica_api,
                s.every_replica_all_api,
                f"{p}.logs.>",
                *_log_reading(s),
            ),
            subscribe_allow=(f"{s.role_inbox('reader')}.>", f"{p}.evt.>", f"{p}.hb.>"),
        )
    if role == "gateway":
        return gateway_permissions(s, ())  # with no worker certificate issued yet
    if role == "manager":
        return _manager_permissions(s)
    raise ConfigError(f"unknown role {role!r}: use manager, worker, admin, reader or gateway")


def gateway_permissions(subjects: Subjects, native_workers: Iterable[str]) -> Permissions:
    """The gateway's permissions: speak for every worker except ``native_workers`` (those
    with a certificate of their own), which the server refuses to it explicitly."""
    s = subjects
    p = s.prefix
    evt, cmd = s.evt_stream, s.cmd_stream
    c = s.gateway_consumer
    denied: list[str] = []
    for w in sorted({check_name(w, "worker name") for w in native_workers}):
        denied += [s.worker_events(w), s.worker_job_events(w)]
    return Permissions(
        comment="gateway: tunasync's HTTP API; speaks only for workers without a certificate",
        publish_allow=(
            s.all_worker_events,
            f"{s.all_worker_events}.>",
            f"{p}.cmd.>",
            f"{p}.api.>",
            s.all_replica_api,
            # Where a command's answer is stored (what /cmd waits for, as the ctl does), and
            # where the log ends (its copy of a worker's jobs waits for the view to get there).
            f"$JS.API.DIRECT.GET.{evt}.>",
            f"$JS.API.STREAM.INFO.{evt}",
            s.every_replica_all_api,
            # Its command consumer (commands for the old workers it forwards to), made by
            # the manager beside it: it only pulls and acknowledges.
            f"$JS.API.CONSUMER.INFO.{cmd}.{c}",
            f"$JS.API.CONSUMER.MSG.NEXT.{cmd}.{c}",
            f"$JS.ACK.{cmd}.{c}.>",
        ),
        # Never an operator's own events (``evt.-admin.<token>``: who sent a command).
        publish_deny=(*denied, f"{s.admin_events}.*", f"{p}.snap.>", f"{p}.hb.>"),
        subscribe_allow=(f"{s.role_inbox('gateway')}.>", f"{p}.evt.>"),
    )


# -- rendering -----------------------------------------------------------------------------


def _q(value: str) -> str:
    """A double-quoted nats-server config string.

    Quoting keeps ``$JS...`` from being read as a variable reference and lets paths hold
    spaces, ``#`` or ``:``.  Control characters have no safe spelling and are refused.
    """
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ConfigError(f"{value!r} contains a control character; it cannot go in nats.conf")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(items: Sequence[str], indent: str) -> str:
    inner = "".join(f"{indent}  {_q(i)}\n" for i in items)
    return f"[\n{inner}{indent}]"


def _render_user(user: str, perm: Permissions, indent: str) -> str:
    i1, i2, i3 = indent + "  ", indent + "    ", indent + "      "
    lines = []
    if perm.comment:
        lines.append(f"{indent}# {perm.comment}")
    lines.append(f"{indent}{{")
    lines.append(f"{i1}user: {_q(user)}")
    lines.append(f"{i1}permissions: {{")
    lines.append(f"{i2}publish: {{")
    lines.append(f"{i3}allow: {_list(perm.publish_allow, i3)}")
    if perm.publish_deny:
        lines.append(f"{i3}deny: {_list(perm.publish_deny, i3)}")
    lines.append(f"{i2}}}")
    lines.append(f"{i2}subscribe: {{")
    lines.append(f"{i3}allow: {_list(perm.subscribe_allow, i3)}")
    lines.append(f"{i2}}}")
    if perm.allow_responses and perm.max_responses > 1:
        lines.append(f"{i2}allow_responses: {{ max: {perm.max_responses} }}")
    elif perm.allow_responses:
        lines.append(f"{i2}allow_responses: true")
    lines.append(f"{i1}}}")
    lines.append(f"{indent}}}")
    return "\n".join(lines)


def operator_permissions(subjects: Subjects, role: str, name: str) -> Permissions:
    """An operator's own certificate (``certs issue admin alice``): its role's rights, with
    an inbox of its own, so that the server tells operators apart."""
    base = role_permissions(subjects, role)
    own = subjects.role_inbox(f"{role}-{name}")
    shared = f"{subjects.role_inbox(role)}.>"
    mine = {
        f"{subjects.prefix}.cmd.*.*.{role}": f"{subjects.prefix}.cmd.*.*.{role}-{name}",
        subjects.operator_events(role): subjects.operator_events(f"{role}-{name}"),
    }
    return replace(
        base,
        comment=f"{role} {name}: {base.comment.split(': ', 1)[-1]}",
        subscribe_allow=tuple(f"{own}.>" if s == shared else s for s in base.subscribe_allow),
        publish_allow=tuple(mine.get(s, s) for s in base.publish_allow),
    )


def render_authorization(
    subjects: Subjects, workers: Iterable[str], operators: Iterable[tuple[str, str]] = ()
) -> str:
    """The ``authorization { users = [...] }`` block: manager, admin, reader, gateway, then each
    worker (the gateway's permissions depend on which workers have a certificate).

    Users are certificate identities (see :func:`mirrorbus.host.pki.identity`).  Worker names are
    validated, de-duplicated and sorted so the output is stable.
    """
    names = sorted({check_name(w, "worker name") for w in workers})
    entries: list[tuple[str, Permissions]] = [
        (identity(role), role_permissions(subjects, role))
        for role in ("manager", "admin", "reader")
    ]
    entries += [
        (identity(role, name), operator_permissions(subjects, role, name))
        for role, name in sorted(set(operators))
    ]
    entries.append((identity("gateway"), gateway_permissions(subjects, names)))
    entries += [(identity("worker", w), role_permissions(subjects, "worker", w)) for w in names]
    users = "\n".join(_render_user(u, p, "    ") for u, p in entries)
    return (
        "# Users are client-certificate subjects (tls.verify_and_map); no default user,\n"
        "# so a certificate that maps to none of them is refused.\n"
        f"authorization {{\n  users = [\n{users}\n  ]\n}}\n"
    )


def _listen(host: str, port: int) -> str:
    try:
        if isinstance(ipaddress.ip_address(host.strip("[]")), ipaddress.IPv6Address):
            return f"[{host.strip('[]')}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class ClusterBlock:
    """This node's place in a cluster: its route listener and the routes to its peers.

    Routes use mutual TLS with ``route.crt`` (see :func:`mirrorbus.host.pki.ensure_route_cert`)
    mapped to the single route user :data:`~mirrorbus.host.pki.ROUTE_IDENTITY`: a client
    certificate of the same CA that reaches the route port is refused, so the users'
    permissions cannot be bypassed through it.
    """

    name: str
    host: str
    port: int
    routes: tuple[tuple[str, int], ...]
    cert: str = "route"
    """Stem of this node's route certificate in the PKI directory: ``route`` (one shared by
    the nodes of ``mirrorbus up --cluster``) or ``route-<node>`` (``certs issue route``)."""


def _render_cluster(cluster: ClusterBlock, pki: Path) -> str:
    routes = [f"tls://{_listen(h, p)}" for h, p in cluster.routes]
    return (
        "# Routes to the other nodes: mutual TLS, and only route.crt may be a route.\n"
        "cluster {\n"
        f"  name: {_q(cluster.name)}\n"
        f"  listen: {_q(_listen(cluster.host, cluster.port))}\n"
        f"  routes: {_list(routes, '  ')}\n"
        "  authorization {\n"
        f"    user: {_q(ROUTE_IDENTITY)}\n"
        "  }\n"
        "  tls {\n"
        f"    cert_file: {_q(str(pki / f'{cluster.cert}.crt'))}\n"
        f"    key_file: {_q(str(pki / f'{cluster.cert}.key'))}\n"
        f"    ca_file: {_q(str(pki / 'ca.crt'))}\n"
        "    verify_and_map: true\n"
        f"    timeout: {TLS_HANDSHAKE_TIMEOUT}\n"
        "  }\n"
        "}\n"
        "\n"
    )


def render_server_config(
    *,
    pki_dir: Path,
    store_dir: Path,
    host: str,
    port: int,
    subjects: Subjects,
    workers: Iterable[str],
    server_name: str = "mirrorbus",
    cluster: ClusterBlock | None = None,
    operators: Iterable[tuple[str, str]] | None = None,
) -> str:
    """A complete nats-server config: listener, JetStream, mutual TLS and the users.

    ``operators`` (role, name): the operators' own certificates; by default those issued in
    ``pki_dir`` (see :func:`mirrorbus.host.pki.issued_operators`).

    The certificate files are the ones :mod:`mirrorbus.host.pki` writes in ``pki_dir``.  There is
    no monitoring port: add one by hand if you want it (it is not covered by the TLS mapping).
    With ``cluster`` the node also routes to its peers (JetStream then replicates streams
    across them; every node needs its own ``server_name`` and ``store_dir``).
    """
    pki = Path(pki_dir)
    return (
        f"server_name: {_q(server_name)}\n"
        f"listen: {_q(_listen(host, port))}\n"
        "\n"
        "jetstream {\n"
        f"  store_dir: {_q(str(store_dir))}\n"
        "}\n"
        "\n"
        "# Mutual TLS: every client must present a certificate signed by our CA; its subject\n"
        "# is its user name below.  Plaintext clients are refused.\n"
        "tls {\n"
        f"  cert_file: {_q(str(pki / 'server.crt'))}\n"
        f"  key_file: {_q(str(pki / 'server.key'))}\n"
        f"  ca_file: {_q(str(pki / 'ca.crt'))}\n"
        "  verify_and_map: true\n"
        f"  timeout: {TLS_HANDSHAKE_TIMEOUT}\n"
        "}\n"
        "\n"
        + (_render_cluster(cluster, pki) if cluster is not None else "")
        + render_authorization(
            subjects,
            workers,
            pki_module.issued_operators(pki) if operators is None else operators,
        )
    )


# -- the repository's reference nats.conf --------------------------------------------------

REFERENCE_WORKER = "mirror1"

_REFERENCE_HEADER = """\
# Reference nats-server configuration for mirrorbus.
#
# GENERATED by `python -m mirrorbus.host.natsconf > nats.conf`; tests/test_server.py checks
# that this file is exactly what mirrorbus.host.natsconf renders, so edit the renderer, not
# this file.
# `mirrorbus up` writes its own copy with real paths under its state directory, and
# `mirrorbus certs authorization --dir PKI` prints the users block for the certificates you
# issued (one entry per worker certificate).
#
# Certificates: `mirrorbus certs init --dir /var/lib/mirrorbus/pki --host nats.example.org`,
# then `mirrorbus certs issue manager|admin|reader --dir ...` and
# `mirrorbus certs issue worker NAME --dir ...` for every worker.
#
# Roles (one user per client certificate; prefix "mirrorbus"):
#   manager  creates/updates the streams (no role may delete or purge them), makes the
#            only consumers (each worker's command consumer), reads the event stream,
#            answers queries on mirrorbus.api.> (allow_responses)
#   admin    publishes commands (mirrorbus.cmd.*.*.admin: its own issuer token) and
#            queries, reads the event log;
#            may never publish events, snapshots or heartbeats, nor administer a stream
#   reader   queries, reads the event log, snapshots and job logs; nothing else
#   worker   (here "mirror1") appends only mirrorbus.evt.mirror1[.>], its snapshot and
#            heartbeat; reads the log to restore; consumes its own commands through the
#            consumer named after itself (made by the manager); replies on _INBOX_mirror1.>
#   Each role has its own inbox prefix (_INBOX_-reader, ...); only the manager makes
#   consumers (a consumer's maker chooses where the server delivers).
#   gateway  tunasync's HTTP API: appends events only for workers WITHOUT a certificate
#            (each worker certificate's subjects are denied to it), commands and the
#            operators' view changes; re-render after issuing a worker certificate
#
"""


def render_reference_config() -> str:
    """The text of the repository's top-level ``nats.conf`` (placeholder paths, one worker)."""
    return _REFERENCE_HEADER + render_server_config(
        pki_dir=Path("/var/lib/mirrorbus/pki"),
        store_dir=Path("/var/lib/mirrorbus/jetstream"),
        host="0.0.0.0",
        port=DEFAULT_PORT,
        subjects=Subjects(),
        workers=[REFERENCE_WORKER],
    )


if __name__ == "__main__":
    print(render_reference_config(), end="")
