"""Settings of the HTTP servers (status API, tunasync gateway): ``HOST:PORT`` addresses and
``[http]``.

A module of its own, without the servers, so that reading a config or checking an address
given on the command line (``mirrorbus up --http``) does not import the HTTP stack: a manager
without HTTP never imports aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorbus.errors import ConfigError

if TYPE_CHECKING:
    import ssl  # imported by the servers that use it: `up`'s supervisor never loads TLS

DEFAULT_LISTEN = "127.0.0.1:14280"


def parse_listen(text: str, source: str = "http", key: str = "http.listen") -> tuple[str, int]:
    """``"127.0.0.1:14280"``, ``"[::1]:14280"`` or ``":14280"`` (all addresses) -> host, port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"listen address {text!r} is not HOST:PORT (e.g. 127.0.0.1:14280)",
            file=source,
            key=key,
        )
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """``[http]``: where to listen, whether at all, and TLS (both files or neither)."""

    enable: bool = False
    listen: str = DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_origin: str | tuple[str, ...] = "*"
    """``Access-Control-Allow-Origin`` of the JSON read routes: one value sent as it is
    (``"*"``), or the origins allowed (each answered with itself); empty: no header."""
    replica: str = ""
    """The manager replica that serves: every response says so (``Mirrorbus-Replica``)."""


def server_tls(
    cert: Path | None, key: Path | None, *, key_name: str, file: str | None = None
) -> ssl.SSLContext | None:
    """The TLS context of an HTTP server from its certificate and key files (None: plain
    HTTP); both or neither, else a ConfigError naming ``key_name`` (and ``file``)."""
    import ssl

    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("TLS needs both tls_cert and tls_key", file=file, key=key_name)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load {cert} / {key}: {exc}", file=file, key=None if file else key_name
        ) from None
    return ctx
