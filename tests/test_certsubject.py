"""The certificate subject read without an X.509 library equals ``cryptography``'s reading.

The ctl records the subject of its certificate as the issuer of every command and takes its
role from the common name; both are read by ``mirrorbus.bus.certsubject`` so that a command
does not import ``cryptography.x509``.  These tests make certificates with ``cryptography``
(subjects of every shape a site's own CA may give) and compare the two readings.
"""

from __future__ import annotations

import base64
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrorbus.bus import certificate_identity, certificate_role
from mirrorbus.bus.certsubject import common_name, read_subject, rfc4514, subject_of_der
from mirrorbus.host import pki

KEY = ec.generate_private_key(ec.SECP256R1())
ISSUER = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a site's CA, with a comma")])


def certificate(subject: x509.Name) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ISSUER)
        .public_key(KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(KEY, hashes.SHA256())
    )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


SHAPES = [
    x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mirrorbus-admin")]),
    x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, e.V."),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, " mirrors +ops; <team> "),
            x509.NameAttribute(NameOID.LOCALITY_NAME, " "),
            x509.NameAttribute(NameOID.COMMON_NAME, "#mirrorbus-admin-jörg"),
        ]
    ),
    x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "org"),
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example"),
            x509.NameAttribute(NameOID.USER_ID, "alice"),
            x509.NameAttribute(NameOID.STREET_ADDRESS, 'Hauptstr. 1 "Hinterhaus"'),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Zürich"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "back\\slash"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "root@example.org"),
            x509.NameAttribute(ObjectIdentifier("1.3.6.1.4.1.99999.1"), "private arc"),
            x509.NameAttribute(NameOID.COMMON_NAME, "mirrorbus-reader"),
        ]
    ),
    x509.Name(  # a multi-valued RDN and string types other than UTF8String
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "mirrorbus-admin-bob"),
                    x509.NameAttribute(
                        NameOID.ORGANIZATION_NAME, "Printable", _ASN1Type.PrintableString
                    ),
                ]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "BMP ü", _ASN1Type.BMPString)]
            ),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(
                        NameOID.X500_UNIQUE_IDENTIFIER, b"\x01\xfe", _ASN1Type.BitString
                    )
                ]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.LOCALITY_NAME, "Zürich", _ASN1Type.T61String)]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.LOCALITY_NAME, "ascii", _ASN1Type.T61String)]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.STREET_ADDRESS, "ü 😀", _ASN1Type.UniversalString)]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "a@b", _ASN1Type.IA5String)]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.SERIAL_NUMBER, "0123", _ASN1Type.NumericString)]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.TITLE, "visible", _ASN1Type.VisibleString)]
            ),
        ]
    ),
]


@pytest.mark.parametrize("subject", SHAPES, ids=range(len(SHAPES)))
def test_every_shape_of_subject_reads_as_cryptography_reads_it(subject: x509.Name) -> None:
    cert = certificate(subject)
    assert rfc4514(subject_of_der(der(cert))) == cert.subject.rfc4514_string()


@settings(max_examples=200, deadline=None)
@given(
    cn=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=16),  # ≤ 64 bytes
    org=st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300),
)
def test_any_text_reads_as_cryptography_reads_it(cn: str, org: str) -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    read = subject_of_der(der(certificate(subject)))
    assert rfc4514(read) == subject.rfc4514_string()
    assert common_name(read) == cn


def test_the_roles_and_identities_of_the_certificates_we_issue(tmp_path: Path) -> None:
    pki.init_ca(tmp_path, ["127.0.0.1"])
    issued = {
        "admin": pki.issue(tmp_path, "admin").cert,
        "admin-alice": pki.issue(tmp_path, "admin", "alice").cert,
        "reader": pki.issue(tmp_path, "reader").cert,
        "manager": pki.issue(tmp_path, "manager").cert,
        None: pki.issue(tmp_path, "worker", "mirrors.example.org").cert,
    }
    for role, cert in issued.items():
        expected = x509.load_pem_x509_certificate(cert.read_bytes()).subject.rfc4514_string()
        assert certificate_identity(cert) == expected
        assert certificate_role(cert) == role
    assert certificate_identity(issued["admin"]) == "CN=mirrorbus-admin"


def test_what_is_not_a_certificate_has_no_subject(tmp_path: Path) -> None:
    cert = certificate(SHAPES[0])
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cut = tmp_path / "cut.crt"
    cut.write_text(pem[: len(pem) // 2] + "\n-----END CERTIFICATE-----\n")
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END")
    for path in (cut, garbage, tmp_path / "missing.crt", tmp_path):
        assert read_subject(path) is None
        assert certificate_identity(path) == ""
        assert certificate_role(path) is None
    with pytest.raises(ValueError):
        subject_of_der(der(cert)[:-200])
    unterminated = der(cert).replace(b"\x06\x03\x55\x04\x03", b"\x06\x03\x85\x84\x83")
    with pytest.raises(ValueError, match="object identifier"):
        subject_of_der(unterminated)
    # Any single byte changed in the subject's attribute: read, or refused as malformed.
    whole = der(cert)
    at = whole.index(b"mirrorbus-admin") - 9  # into the attribute's type and lengths
    for i in range(at, at + 12):
        for value in (0x00, 0x7F, 0x80, 0x81, 0xFF):
            changed = whole[:i] + bytes([value]) + whole[i + 1 :]
            with contextlib.suppress(ValueError):
                rfc4514(subject_of_der(changed))


def test_a_subject_cryptography_refuses_is_refused_too(tmp_path: Path) -> None:
    """A TeletexString that is not UTF-8: cryptography cannot read the subject, and neither
    does this reader (the command then records no issuer, as it did with cryptography)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Zxrich", _ASN1Type.T61String)])
    latin = der(certificate(subject)).replace(b"Zxrich", b"Z\xfcrich")  # not UTF-8
    with pytest.raises(ValueError):
        x509.load_der_x509_certificate(latin).subject.rfc4514_string()
    with pytest.raises(ValueError):
        subject_of_der(latin)
    pem = tmp_path / "latin.crt"
    body = base64.encodebytes(latin).decode()
    pem.write_text(f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n")
    assert certificate_identity(pem) == ""
