"""The private certificate authority of a mirrorbus site, and the certificates it issues.

Identity and authority on the bus come from the client certificate: nats-server runs with
``verify_and_map``, so the certificate a process presents *is* its user, and the user's
permissions (see :mod:`mirrorbus.host.natsconf`) are what it may do.  This module replaces the
openssl steps of tunasync's documentation with a few calls that cannot be got wrong::

    init_ca(Path("/var/lib/mirrorbus/pki"))                  # ca.* and server.*
    issue(Path("/var/lib/mirrorbus/pki"), "worker", "w1")     # worker-w1.crt / .key
    identity("worker", "w1")                                  # 'CN=mirrorbus-worker-w1'

Design decisions:

- ECDSA P-256 everywhere: small, fast to generate (tests make dozens), supported by Go's TLS.
- Client certificates carry a subject with a single CN and **no** subject alternative names.
  nats-server's ``verify_and_map`` tries email SANs, then DNS SANs, then the subject DN in
  RFC 2253 form; with no SANs only the DN is tried and it is exactly ``CN=<cn>``, so one
  certificate maps to one user and nothing else.  The role is part of the CN
  (``mirrorbus-worker-w1``, ``mirrorbus-admin``), so a worker called ``admin`` is still
  ``CN=mirrorbus-worker-admin`` and can never be mistaken for the admin.
- A worker's CN and file names hold its name's subject token
  (:func:`~mirrorbus.events.subjects.name_token`), never the name as written: a token has no
  character RFC 2253, nats.conf or a file system reads specially.  A token too long for a
  CN's 64 characters is cut (:func:`~mirrorbus.events.subjects.fit`); the whole token is
  kept in the certificate's Netscape comment, from which ``issued_workers`` reads it back.
- Private keys are never on disk with a wider mode than 0600, not even for an instant: they
  are written to a temporary file opened with mode 0600 and renamed into place, which also
  makes every write atomic (a crash leaves the old key or the new one, never half of one).
- Re-issuing a client certificate overwrites it; replacing the CA needs ``force`` because it
  silently invalidates every certificate issued so far.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mirrorbus.errors import InvalidName, PkiError
from mirrorbus.events.subjects import (
    check_name,
    check_token,
    file_token,
    fit,
    name_token,
    token_name,
)

__all__ = [
    "DEFAULT_HOSTS",
    "ROLES",
    "ROUTE_IDENTITY",
    "WORKER_NAME_OID",
    "IssuedCert",
    "cert_stem",
    "ensure_pki",
    "ensure_route_cert",
    "identity",
    "init_ca",
    "issue",
    "issue_route",
    "issued_cert",
    "issued_operators",
    "issued_workers",
    "revoke",
]

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
OPERATOR_ROLES: tuple[str, ...] = ("admin", "reader")
"""Roles whose certificates may name a person (``certs issue admin alice``)."""
#: Roles a client certificate can be issued for; ``worker`` takes a name, admin and reader
#: may (one certificate per operator).
ROLES: tuple[str, ...] = ("manager", "worker", "admin", "reader", "gateway")
#: The identity of ``route.crt``, the certificate cluster nodes present to each other.
ROUTE_IDENTITY = "CN=mirrorbus-route"

_CA_DAYS = 3650
# Leaf certificates outlive a typical mirror host's install; re-issue with `certs issue`.
_LEAF_DAYS = 1825
_CLOCK_SKEW = dt.timedelta(minutes=5)
_ORG = "mirrorbus"
_WORKER_CN = "mirrorbus-worker-"
_CN_MAX = 64  # X.509's upper bound for a common name, which cryptography enforces
#: Where a worker certificate keeps its name's whole token: the common name holds the token
#: cut to 64 characters for a long name, so only this says which name a cut one stands for.
#: It is the Netscape comment extension (an IA5String, non-critical): every TLS stack skips
#: it, and a private OID would need a registered arc (Go's parser, hence nats-server, refuses
#: the 128-bit arcs of a UUID-based one).
WORKER_NAME_OID = x509.ObjectIdentifier("2.16.840.1.113730.1.13")
_TOKEN_NOTE = "mirrorbus worker "


@dataclass(frozen=True, slots=True)
class IssuedCert:
    """Where a client certificate and its key were written, and the user it maps to."""

    role: str
    name: str | None
    cert: Path
    key: Path
    identity: str


# -- names ---------------------------------------------------------------------------------


def _check_role(role: str, name: str | None) -> None:
    if role not in ROLES:
        raise PkiError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if role == "worker":
        if name is None:
            raise PkiError(
                "role 'worker' needs a worker name, e.g. `mirrorbus certs issue worker w1`"
            )
        check_name(name, "worker name")
    elif name is not None and role in OPERATOR_ROLES:
        try:
            check_token(name, "operator name")
        except InvalidName as exc:
            raise PkiError(str(exc)) from None
        if len(f"mirrorbus-{role}-{name}") > _CN_MAX:
            raise PkiError(f"operator name {name!r} is too long for a certificate's name")
    elif name is not None:
        raise PkiError(
            f"role {role!r} takes no name (got {name!r}); only worker, admin and reader do"
        )


def _common_name(role: str, name: str | None) -> str:
    """``mirrorbus-worker-<token>`` (the name's subject token, see
    :func:`~mirrorbus.events.subjects.name_token`: no character RFC 2253 or nats.conf reads
    specially), cut to a common name's 64 characters; ``mirrorbus-<role>`` for the others."""
    _check_role(role, name)
    if role == "worker":
        assert name is not None
        return _WORKER_CN + fit(name_token(name, "worker name"), _CN_MAX - len(_WORKER_CN))
    return f"mirrorbus-{role}-{name}" if name is not None else f"mirrorbus-{role}"


def cert_stem(role: str, name: str | None = None) -> str:
    """The file name, less ``.crt``/``.key``, of a role's certificate: ``worker-<token>`` (the
    name's token cut to fit a file name) or the role."""
    return _stem(role, name)


def _stem(role: str, name: str | None) -> str:
    _check_role(role, name)
    if role == "worker":
        assert name is not None
        return f"worker-{file_token(name, 'worker name')}"
    return f"{role}-{name}" if name is not None else role


def _der_ia5(text: str) -> bytes:
    data = text.encode("ascii")
    size = len(data)
    if size < 0x80:
        return b"\x16" + bytes([size]) + data
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x16" + bytes([0x80 | len(octets)]) + octets + data


def _read_ia5(der: bytes) -> str | None:
    if len(der) < 2 or der[0] != 0x16:
        return None
    if der[1] < 0x80:
        start, size = 2, der[1]
    else:
        start = 2 + (der[1] & 0x7F)
        size = int.from_bytes(der[2:start], "big")
    body = der[start:]
    return body.decode("ascii") if len(body) == size else None


def _worker_name_of(cert: x509.Certificate) -> str | None:
    """The worker name a certificate was issued for (None: not a worker certificate)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if len(cns) == 1 else None
    if not isinstance(cn, str) or not cn.startswith(_WORKER_CN):
        return None
    token = cn[len(_WORKER_CN) :]  # issued before names could be cut: the CN says it all
    try:
        raw = cert.extensions.get_extension_for_oid(WORKER_NAME_OID).value
        note = _read_ia5(raw.value) if isinstance(raw, x509.UnrecognizedExtension) else None
        if note is None or not note.startswith(_TOKEN_NOTE):
            return None
        token = note[len(_TOKEN_NOTE) :]
    except x509.ExtensionNotFound:
        pass
    except (UnicodeDecodeError, ValueError):
        return None
    try:
        name = token_name(token, "worker name")
        return name if _common_name("worker", name) == cn else None
    except InvalidName:
        return None


def identity(role: str, name: str | None = None) -> str:
    """The user string nats-server's ``verify_and_map`` derives from that role's certificate.

    It is the subject DN as nats-server 2.15 prints it (RFC 2253), e.g.
    ``identity("worker", "w1") == "CN=mirrorbus-worker-w1"``.  Raises :class:`PkiError` for an
    unknown role or a missing/extra name, :class:`~mirrorbus.errors.InvalidName` for a bad name.
    """
    return f"CN={_common_name(role, name)}"


# -- files ---------------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` through a temp file created with ``mode``, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC, mode)
    except FileExistsError:
        tmp.unlink()  # left over by a crashed run of this very process id
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC, mode)
    try:
        # The umask may have narrowed `mode`; make it exact (never wider than asked).
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_pair(
    directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        _write_atomic(directory / f"{stem}.key", key_pem, 0o600)
        _write_atomic(
            directory / f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM), 0o644
        )
    except OSError as e:
        raise PkiError(f"cannot write {directory / stem}.crt/.key: {e.strerror or e}") from e


def _make_dir(directory: Path) -> None:
    try:
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True)
            directory.chmod(0o700)  # mkdir's mode is filtered by the umask
    except OSError as e:
        raise PkiError(f"cannot create certificate directory {directory}: {e.strerror or e}") from e


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    for p in (cert_path, key_path):
        if not p.is_file():
            raise PkiError(
                f"no CA in {directory} ({p.name} is missing): "
                f"run `mirrorbus certs init --dir {directory}` first"
            )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise PkiError(f"cannot read the CA in {directory}: {e}") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: not an ECDSA key (was this CA made by mirrorbus?)")
    return cert, key


# -- building certificates -----------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _sign_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    ekus: Sequence[x509.ObjectIdentifier],
    sans: Sequence[x509.GeneralName] = (),
    extensions: Sequence[x509.ExtensionType] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), _LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _san(host: str) -> x509.GeneralName:
    """An IP address SAN for an IP literal, a DNS name SAN for anything else."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return x509.DNSName(host)


def _issue_server(directory: Path, hosts: Sequence[str]) -> None:
    if not hosts:
        raise PkiError("the server certificate needs at least one host name or address")
    ca_cert, ca_key = _load_ca(directory)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, "mirrorbus-server"),
        ]
    )
    sans = list(dict.fromkeys(_san(h) for h in hosts))
    cert, key = _sign_leaf(ca_cert, ca_key, subject, [ExtendedKeyUsageOID.SERVER_AUTH], sans)
    _write_pair(directory, "server", cert, key)


def init_ca(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS, *, force: bool = False) -> None:
    """Create a new CA (``ca.crt``/``ca.key``) and the server certificate for ``hosts``.

    ``hosts`` become the server certificate's SANs: IP literals as IP addresses, the rest as
    DNS names; clients check the host they dial against them.  An existing CA is kept and
    :class:`PkiError` raised unless ``force``: replacing it invalidates every client
    certificate already handed out.
    """
    directory = Path(directory)
    if not force:
        for p in (directory / "ca.crt", directory / "ca.key"):
            if p.exists():
                raise PkiError(f"{p} already exists; pass --force to replace the CA")
    _make_dir(directory)
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, "mirrorbus CA"),
        ]
    )
    cert = (
        _builder(name, name, key.public_key(), _CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_pair(directory, "ca", cert, key)
    _issue_server(directory, hosts)


def issue(directory: Path, role: str, name: str | None = None) -> IssuedCert:
    """Issue (or re-issue, overwriting) the client certificate of ``role`` from the CA in
    ``directory``.

    >>> issue(Path("pki"), "worker", "w1").identity     # doctest: +SKIP
    'CN=mirrorbus-worker-w1'

    Raises :class:`PkiError` for an unknown role, a worker without a name, a name given to
    another role, or a directory without a CA.
    """
    directory = Path(directory)
    cn = _common_name(role, name)  # validates role and name before touching the disk
    ca_cert, ca_key = _load_ca(directory)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    extra = []
    if name is not None and role == "worker":
        note = _TOKEN_NOTE + name_token(name, "worker name")
        extra.append(x509.UnrecognizedExtension(WORKER_NAME_OID, _der_ia5(note)))
    cert, key = _sign_leaf(
        ca_cert, ca_key, subject, [ExtendedKeyUsageOID.CLIENT_AUTH], extensions=extra
    )
    stem = _stem(role, name)
    _write_pair(directory, stem, cert, key)
    return IssuedCert(
        role=role,
        name=name,
        cert=directory / f"{stem}.crt",
        key=directory / f"{stem}.key",
        identity=identity(role, name),
    )


def issued_cert(directory: Path, role: str, name: str | None = None) -> IssuedCert:
    """The paths and identity of an already issued certificate (not checked to exist)."""
    directory = Path(directory)
    stem = _stem(role, name)
    return IssuedCert(
        role=role,
        name=name,
        cert=directory / f"{stem}.crt",
        key=directory / f"{stem}.key",
        identity=identity(role, name),
    )


def _server_covers(directory: Path, hosts: Sequence[str], stem: str = "server") -> bool:
    """Whether ``<stem>.crt`` exists and names every one of ``hosts``."""
    try:
        cert = x509.load_pem_x509_certificate((directory / f"{stem}.crt").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    return all(_san(h) in sans for h in hosts) and (directory / f"{stem}.key").is_file()


def ensure_route_cert(directory: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> Path:
    """Issue ``route.crt``/``route.key`` (unless one covering ``hosts`` exists); return the crt.

    Cluster nodes authenticate each other with it: a node dials its peers as a TLS *client*
    and accepts them as a *server*, so the certificate carries both extended key usages,
    which ``server.crt`` (server only) and the role certificates (client only) do not.  Its
    subject :data:`ROUTE_IDENTITY` is the only route user, so no role certificate from the
    same CA (a worker's, say) can join the cluster and bypass the users' permissions.
    """
    directory = Path(directory)
    if not _server_covers(directory, hosts, "route"):
        _write_route_pair(directory, "route", hosts)
    return directory / "route.crt"


def _write_route_pair(directory: Path, stem: str, hosts: Sequence[str]) -> None:
    """Sign and write ``<stem>.crt``/``.key``: a route certificate (server and client use,
    subject :data:`ROUTE_IDENTITY`) naming ``hosts``."""
    ca_cert, ca_key = _load_ca(directory)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROUTE_IDENTITY[3:])])
    cert, key = _sign_leaf(
        ca_cert,
        ca_key,
        subject,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        list(dict.fromkeys(_san(h) for h in hosts)),
    )
    _write_pair(directory, stem, cert, key)


_NODE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def check_node(node: str) -> str:
    """A cluster node's name, as it appears in a file name and a certificate: a host name
    (letters, digits, ``.`` and ``-``) or an IPv4 address; :class:`PkiError` otherwise."""
    if not _NODE.fullmatch(node) or ".." in node:
        raise PkiError(
            f"node name {node!r} is not allowed: use the node's host name, e.g. "
            "nats2.example.org (letters, digits, '.' and '-')"
        )
    return node


def issue_route(directory: Path, node: str, hosts: Sequence[str] = ()) -> IssuedCert:
    """Issue (or re-issue) ``route-<node>.crt``/``.key``: the route certificate of one node
    of a multi-host cluster, for ``node`` and ``hosts`` (the names and addresses its peers
    dial).

    Like ``route.crt`` (one certificate for every node of ``mirrorbus up --cluster`` on one
    host) it is both a TLS server and client certificate with the route user's subject
    :data:`ROUTE_IDENTITY`; one per node means a node's key never leaves its host, and a
    peer dialing ``nats2.example.org`` checks that the node answering is that one.
    """
    directory = Path(directory)
    check_node(node)
    stem = f"route-{node}"
    _write_route_pair(directory, stem, [node, *hosts])
    return IssuedCert(
        role="route",
        name=node,
        cert=directory / f"{stem}.crt",
        key=directory / f"{stem}.key",
        identity=ROUTE_IDENTITY,
    )


def ensure_pki(directory: Path, hosts: Sequence[str], workers: Iterable[str]) -> None:
    """Make whatever of the embedded default's PKI is missing; reuse everything that exists.

    Creates the CA (and server certificate) if there is none, re-issues the server
    certificate if it does not cover every one of ``hosts`` (e.g. after ``--host`` changed),
    and issues manager, admin, reader, gateway and a certificate for each of ``workers`` that
    lacks one.
    Safe to call on every start.
    """
    directory = Path(directory)
    workers = [check_name(w, "worker name") for w in workers]
    if not (directory / "ca.crt").exists() and not (directory / "ca.key").exists():
        init_ca(directory, hosts)
    elif not _server_covers(directory, hosts):
        _issue_server(directory, hosts)
    wanted: list[tuple[str, str | None]] = [
        ("manager", None),
        ("admin", None),
        ("reader", None),
        ("gateway", None),
    ]
    wanted += [("worker", w) for w in workers]
    for role, name in wanted:
        c = issued_cert(directory, role, name)
        if not (c.cert.is_file() and c.key.is_file()):
            issue(directory, role, name)


def issued_operators(directory: Path) -> list[tuple[str, str]]:
    """(role, name) of the operators' own certificates in ``directory``: ``admin-<name>.crt``
    and ``reader-<name>.crt`` (one per person, so that the server, and the audit, can tell
    them apart)."""
    found: list[tuple[str, str]] = []
    for role in OPERATOR_ROLES:
        for p in Path(directory).glob(f"{role}-*.crt"):
            name = p.name[len(role) + 1 : -len(".crt")]
            try:
                _check_role(role, name)
            except PkiError:
                continue  # not one of ours
            if (Path(directory) / f"{role}-{name}.key").is_file():
                found.append((role, name))
    return sorted(found)


def revoke(directory: Path, role: str, name: str | None = None) -> list[Path]:
    """Take a client certificate out of ``directory`` (moved, with its key, into
    ``revoked/``): the users block rendered from the directory no longer lists it, so the
    server refuses it once its config is reloaded.  Returns where the files went."""
    _check_role(role, name)
    if role not in (*OPERATOR_ROLES, "worker"):
        raise PkiError(f"role {role!r} is not revoked this way: re-issue it instead")
    stem = _stem(role, name)
    files = [Path(directory) / f"{stem}{suffix}" for suffix in (".crt", ".key")]
    if not files[0].is_file():
        raise PkiError(f"no certificate {files[0].name} in {directory}")
    graveyard = Path(directory) / "revoked"
    graveyard.mkdir(mode=0o700, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = []
    for f in files:
        if f.exists():
            target = graveyard / f"{f.stem}.{stamp}{f.suffix}"
            f.replace(target)
            moved.append(target)
    return moved


def issued_workers(directory: Path) -> list[str]:
    """Names of the workers that have a certificate (``worker-<token>.crt``) in ``directory``,
    as written: read from the certificates, since a file name holds only a (maybe cut) token.
    A file that is not a worker certificate issued here is skipped."""
    names: list[str] = []
    for p in Path(directory).glob("worker-*.crt"):
        try:
            cert = x509.load_pem_x509_certificate(p.read_bytes())
        except (OSError, ValueError):
            continue
        name = _worker_name_of(cert)
        if name is not None and p.name == f"{_stem('worker', name)}.crt":
            names.append(name)
    return sorted(names)
