"""The CA and certificates: what is in them, how they are stored, and what is refused.

The mapping of a certificate to its nats user is checked against the real server in
test_permissions.py; here we check what we put into the certificates.
"""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mirrorbus.errors import InvalidName, PkiError
from mirrorbus.host import pki


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    pki.init_ca(directory, ("localhost", "127.0.0.1", "::1", "nats.example.org"))
    return directory


def test_ca_is_a_ca(ca_dir: Path) -> None:
    ca = _cert(ca_dir / "ca.crt")
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.subject == ca.issuer
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)


def test_server_cert_sans_and_usage(ca_dir: Path) -> None:
    server = _cert(ca_dir / "server.crt")
    ca = _cert(ca_dir / "ca.crt")
    server.verify_directly_issued_by(ca)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"localhost", "nats.example.org"}
    assert set(sans.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_file_modes(ca_dir: Path) -> None:
    pki.issue(ca_dir, "worker", "w1")
    assert _mode(ca_dir) == 0o700
    for stem in ("ca", "server", "worker-w1"):
        assert _mode(ca_dir / f"{stem}.key") == 0o600
        assert _mode(ca_dir / f"{stem}.crt") == 0o644
    assert not list(ca_dir.glob(".*tmp")), "temporary files are left behind"


def test_refuses_to_overwrite_ca(ca_dir: Path) -> None:
    before = (ca_dir / "ca.crt").read_bytes()
    with pytest.raises(PkiError, match=r"ca\.crt already exists.*--force"):
        pki.init_ca(ca_dir)
    assert (ca_dir / "ca.crt").read_bytes() == before
    pki.init_ca(ca_dir, force=True)
    assert (ca_dir / "ca.crt").read_bytes() != before


@pytest.mark.parametrize(
    ("role", "name", "stem", "cn"),
    [
        ("manager", None, "manager", "mirrorbus-manager"),
        ("admin", None, "admin", "mirrorbus-admin"),
        ("reader", None, "reader", "mirrorbus-reader"),
        ("worker", "mirror-1", "worker-mirror-1", "mirrorbus-worker-mirror-1"),
    ],
)
def test_client_certs(ca_dir: Path, role: str, name: str | None, stem: str, cn: str) -> None:
    issued = pki.issue(ca_dir, role, name)
    assert issued.cert == ca_dir / f"{stem}.crt"
    assert issued.key == ca_dir / f"{stem}.key"
    assert issued.identity == pki.identity(role, name) == f"CN={cn}"
    cert = _cert(issued.cert)
    cert.verify_directly_issued_by(_cert(ca_dir / "ca.crt"))
    # Only the CN: with no SANs nats-server can map the cert to one string only.
    assert cert.subject.rfc4514_string() == f"CN={cn}"
    assert [a.oid for a in cert.subject] == [NameOID.COMMON_NAME]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_reissue_overwrites(ca_dir: Path) -> None:
    first = pki.issue(ca_dir, "worker", "w1").cert.read_bytes()
    second = pki.issue(ca_dir, "worker", "w1").cert.read_bytes()
    assert first != second
    assert _mode(ca_dir / "worker-w1.key") == 0o600


def test_worker_named_like_a_role_is_still_a_worker() -> None:
    assert pki.identity("worker", "admin") != pki.identity("admin")


def test_an_operator_certificate_is_a_user_of_its_own(ca_dir: Path) -> None:
    alice = pki.issue(ca_dir, "admin", "alice")
    assert alice.identity == "CN=mirrorbus-admin-alice" != pki.identity("admin")
    assert pki.identity("worker", "admin-alice") != alice.identity
    assert alice.cert.name == "admin-alice.crt"
    pki.issue(ca_dir, "reader", "bob")
    assert pki.issued_operators(ca_dir) == [("admin", "alice"), ("reader", "bob")]
    pki.revoke(ca_dir, "reader", "bob")
    assert pki.issued_operators(ca_dir) == [("admin", "alice")]


@pytest.mark.parametrize(
    ("role", "name", "message"),
    [
        ("root", None, r"unknown role 'root'"),
        ("worker", None, r"needs a worker name"),
        ("manager", "x", r"takes no name"),
        ("admin", "a.b", r"operator name 'a.b'"),
    ],
)
def test_bad_roles(ca_dir: Path, role: str, name: str | None, message: str) -> None:
    with pytest.raises(PkiError, match=message):
        pki.issue(ca_dir, role, name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\nb", "x" * 256])
def test_bad_worker_names(ca_dir: Path, name: str) -> None:
    with pytest.raises(InvalidName):
        pki.issue(ca_dir, "worker", name)
    assert not list(ca_dir.glob("worker-*"))


def test_issue_without_ca(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match=r"no CA in .*mirrorbus certs init"):
        pki.issue(tmp_path, "admin")


def test_ensure_pki_is_idempotent(tmp_path: Path) -> None:
    d = tmp_path / "state" / "pki"
    pki.ensure_pki(d, ["localhost", "127.0.0.1"], ["w1"])
    files = {p.name: p.read_bytes() for p in d.iterdir()}
    assert set(files) == {
        f"{stem}.{ext}"
        for stem in ("ca", "server", "manager", "admin", "reader", "gateway", "worker-w1")
        for ext in ("crt", "key")
    }
    pki.ensure_pki(d, ["localhost", "127.0.0.1"], ["w1", "w2"])
    again = {p.name: p.read_bytes() for p in d.iterdir()}
    assert {k: v for k, v in again.items() if k in files} == files
    assert "worker-w2.crt" in again
    assert pki.issued_workers(d) == ["w1", "w2"]


def test_ensure_pki_reissues_server_cert_for_new_host(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    pki.ensure_pki(d, ["127.0.0.1"], [])
    ca = (d / "ca.crt").read_bytes()
    pki.ensure_pki(d, ["127.0.0.1", "mirror.example.org"], [])
    assert (d / "ca.crt").read_bytes() == ca
    sans = _cert(d / "server.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "mirror.example.org" in sans.value.get_values_for_type(x509.DNSName)


def test_issued_workers_ignores_strays(ca_dir: Path) -> None:
    pki.issue(ca_dir, "worker", "b")
    pki.issue(ca_dir, "worker", "a")
    (ca_dir / "worker-x.y.crt").write_text("not a worker")
    assert pki.issued_workers(ca_dir) == ["a", "b"]
