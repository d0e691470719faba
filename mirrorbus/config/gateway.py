"""``[tunasync_api]``: where the gateway serves tunasync's API, to whom, and as whom.

::

    [tunasync_api]
    listen = "127.0.0.1:14242"      # tunasync's manager address: old workers' api_base
    allow = ["127.0.0.1/32", "10.1.0.0/16"]   # who may call (default: loopback only)
    tls_cert = "/etc/mirrorbus/api.crt"      # serve HTTPS, as tunasync's ssl_cert/ssl_key
    tls_key = "/etc/mirrorbus/api.key"
    ca_cert = "/etc/mirrorbus/workers-ca.crt"  # verifies old workers' https:// URLs
    bus_cert = "/etc/mirrorbus/pki/gateway.crt"  # the gateway's own certificate on the bus
    bus_key = "/etc/mirrorbus/pki/gateway.key"   # (default: gateway.* beside [bus] cert)

The section (or ``--tunasync-api HOST:PORT``) turns the gateway on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from mirrorbus.config.listen import parse_listen
from mirrorbus.config.schema import Checked, Kind, settings_table
from mirrorbus.errors import ConfigError

DEFAULT_LISTEN = "127.0.0.1:14242"
"""tunasync's manager's usual address, so old workers' ``api_base`` need not change."""

LOOPBACK = ("127.0.0.0/8", "::1/128")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``[tunasync_api]``: where to serve tunasync's API and who may call it.

    ``allow`` holds source networks (CIDR); ``ca_cert`` verifies old workers' HTTPS URLs;
    ``bus_cert``/``bus_key`` are the gateway's own certificate on the bus (role ``gateway``).
    """

    enable: bool = False
    listen: str = DEFAULT_LISTEN
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow: tuple[str, ...] = LOOPBACK
    ca_cert: Path | None = None
    bus_cert: Path | None = None
    bus_key: Path | None = None
    networks: tuple[Network, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        nets = []
        for text in self.allow:
            try:
                nets.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ConfigError(
                    f"{text!r} is not a network (e.g. 10.0.0.0/8 or 127.0.0.1)",
                    key="tunasync_api.allow",
                ) from None
        object.__setattr__(self, "networks", tuple(nets))

    def allows(self, peer: str | None) -> bool:
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)


TUNASYNC_API_KEYS: Mapping[str, Kind] = {
    "listen": Kind.STR,
    "allow": Kind.ANY,  # one network or a list of them: gateway_settings says which
    "tls_cert": Kind.STR,
    "tls_key": Kind.STR,
    "ca_cert": Kind.STR,
    "bus_cert": Kind.STR,
    "bus_key": Kind.STR,
}


def gateway_settings(doc: Mapping[str, object], source: Path) -> GatewaySettings:
    """The ``[tunasync_api]`` section of a manager config (absent: the gateway is off)."""
    if "tunasync_api" not in doc:
        return GatewaySettings()
    table = settings_table(doc, "tunasync_api", TUNASYNC_API_KEYS, source)
    listen = table.text("listen", DEFAULT_LISTEN)
    parse_listen(listen, str(source))
    allow = table.values.get("allow", list(LOOPBACK))
    if isinstance(allow, str):
        allow = [allow]
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise ConfigError(
            'must be a list of networks, e.g. ["10.0.0.0/8"]',
            file=source,
            key="tunasync_api.allow",
        )
    paths = {k: _file(table, k, source) for k in ("tls_cert", "tls_key", "ca_cert")}
    paths |= {k: _file(table, k, source) for k in ("bus_cert", "bus_key")}
    for a, b in (("tls_cert", "tls_key"), ("bus_cert", "bus_key")):
        if (paths[a] is None) != (paths[b] is None):
            raise ConfigError(f"give both {a} and {b}, or neither", file=source, key="tunasync_api")
    try:
        return GatewaySettings(
            enable=True,
            listen=listen,
            allow=tuple(allow),
            tls_cert=paths["tls_cert"],
            tls_key=paths["tls_key"],
            ca_cert=paths["ca_cert"],
            bus_cert=paths["bus_cert"],
            bus_key=paths["bus_key"],
        )
    except ConfigError as exc:
        raise ConfigError(exc.problem, file=source, key=exc.key) from None


def _file(table: Checked, key: str, source: Path) -> Path | None:
    path = table.path(key, source)
    if path is not None and not path.is_file():
        raise ConfigError(f"file {path} does not exist", file=source, key=f"tunasync_api.{key}")
    return path


def with_listen(settings: GatewaySettings, listen: str | None) -> GatewaySettings:
    """``--tunasync-api HOST:PORT`` turns the gateway on there (over ``[tunasync_api] listen``)."""
    if listen is None:
        return settings
    parse_listen(listen, "--tunasync-api")
    return replace(settings, enable=True, listen=listen)
