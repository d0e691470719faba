"""The subject of a client certificate, read from its DER without an X.509 library.

Every ``ctl`` command that changes something records who sent it (the certificate's subject
as an RFC 4514 string, ``CN=mirrorbus-admin``), and every client connects with its role's
inbox prefix (from the subject's common name).  Importing ``cryptography.x509`` only to read
those costs a command about 35 ms, a tenth of its whole run, so this module walks the few
DER elements on the way to the subject itself::

    Certificate  ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
                     serialNumber, signature, issuer Name, validity, subject Name, ... } ... }
    Name         ::= SEQUENCE OF SET OF SEQUENCE { type OBJECT IDENTIFIER, value ANY }

:func:`rfc4514` renders a subject the way ``cryptography``'s ``Name.rfc4514_string()``
does (the same short names, escapes and order); a test holds the two to each other.
"""

from __future__ import annotations

import base64
from pathlib import Path

__all__ = ["Subject", "common_name", "read_subject", "rfc4514", "subject_of_der"]

Subject = list[list[tuple[str, str | bytes]]]
"""Relative distinguished names in certificate order, each (dotted OID, value) pairs; a
value that is not a string type is its raw bytes."""

_SHORT_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "2.5.4.6": "C",
    "2.5.4.9": "STREET",
    "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_COMMON_NAME = "2.5.4.3"

# DER string types and how their bytes decode
_TEXT = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "utf-8",  # TeletexString: read as UTF-8, as cryptography does (else refused)
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}


class _Malformed(ValueError):
    pass


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER element at ``at``."""
    if at + 2 > len(der):
        raise _Malformed("truncated")
    tag, length = der[at], der[at + 1]
    start = at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(der):
            raise _Malformed("bad length")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    end = start + length
    if end > len(der):
        raise _Malformed("truncated")
    return tag, start, end


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, value start, value end) of each element in ``der[start:end]``."""
    out = []
    at = start
    while at < end:
        tag, vstart, vend = _element(der, at)
        out.append((tag, vstart, vend))
        at = vend
    return out


def _oid(body: bytes) -> str:
    if not body:
        raise _Malformed("empty object identifier")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if not arcs or body[-1] & 0x80:
        raise _Malformed("unterminated object identifier")
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def _value(der: bytes, tag: int, start: int, end: int) -> str | bytes:
    encoding = _TEXT.get(tag)
    if encoding is None:  # not a string (a bit string, say): its bytes
        return der[start:end]
    try:
        return der[start:end].decode(encoding)
    except UnicodeDecodeError as exc:
        raise _Malformed("undecodable value") from exc


def subject_of_der(der: bytes) -> Subject:
    """The subject of a DER certificate (ValueError if it is not one)."""
    tag, start, end = _element(der, 0)
    if tag != 0x30:
        raise _Malformed("not a certificate")
    tag, start, end = _element(der, start)  # tbsCertificate
    if tag != 0x30:
        raise _Malformed("not a certificate")
    fields = [c for c in _children(der, start, end) if c[0] != 0xA0]  # without [0] version
    if len(fields) < 5 or fields[4][0] != 0x30:
        raise _Malformed("no subject")
    _, nstart, nend = fields[4]  # serial, signature, issuer, validity, subject
    subject: Subject = []
    for set_tag, sstart, send in _children(der, nstart, nend):
        if set_tag != 0x31:
            raise _Malformed("bad name")
        rdn = []
        for seq_tag, astart, aend in _children(der, sstart, send):
            parts = _children(der, astart, aend)
            if seq_tag != 0x30 or len(parts) != 2 or parts[0][0] != 0x06:
                raise _Malformed("bad attribute")
            (_, ostart, oend), (vtag, vstart, vend) = parts
            rdn.append((_oid(der[ostart:oend]), _value(der, vtag, vstart, vend)))
        subject.append(rdn)
    return subject


def read_subject(cert: Path | str) -> Subject | None:
    """The subject of the first certificate of a PEM file; None if it cannot be read."""
    try:
        pem = Path(cert).read_text()
        body = pem.split("-----BEGIN CERTIFICATE-----", 1)[1].split("-----END", 1)[0]
        return subject_of_der(base64.b64decode("".join(body.split()), validate=True))
    except (OSError, IndexError, ValueError):
        return None


def common_name(subject: Subject) -> str | None:
    """The subject's (last) common name, if it has one."""
    names = [v for rdn in subject for oid, v in rdn if oid == _COMMON_NAME and isinstance(v, str)]
    return names[-1] if names else None


def _escape(value: str | bytes) -> str:
    if not value:
        return ""
    if isinstance(value, bytes):  # RFC 4514: "#" and the value's octets in hex
        return "#" + value.hex()
    for char, escaped in (
        ("\\", "\\\\"),
        ('"', '\\"'),
        ("+", "\\+"),
        (",", "\\,"),
        (";", "\\;"),
        ("<", "\\<"),
        (">", "\\>"),
        ("\0", "\\00"),
    ):
        value = value.replace(char, escaped)
    if value[0] == "#" or (value[0] == " " and len(value) > 1):  # (a lone space: below)
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def rfc4514(subject: Subject) -> str:
    """``CN=mirrorbus-admin,O=mirrorbus``: the last RDN first, as RFC 4514 writes names."""
    return ",".join(
        "+".join(f"{_SHORT_NAMES.get(oid, oid)}={_escape(value)}" for oid, value in rdn)
        for rdn in reversed(subject)
    )
