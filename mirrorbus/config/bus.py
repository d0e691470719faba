"""How to reach NATS and the streams' limits: the ``[bus]`` section every config file may
have, and the plain settings a connection is made with, without nats-py.

Apart from :mod:`mirrorbus.bus` (the adapter) so that reading a config or showing ``--help``
does not import the NATS client; :mod:`mirrorbus.bus` re-exports the settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mirrorbus.config.schema import Kind, Where, resolve, section
from mirrorbus.errors import ConfigError, InvalidName
from mirrorbus.events.subjects import DEFAULT_PREFIX, Subjects

__all__ = [
    "BUS_KEYS",
    "STATE_DIR_ENV",
    "BusConfig",
    "BusSettings",
    "StreamSettings",
    "bus_section",
    "from_bus_config",
    "settings_from_paths",
]

STATE_DIR_ENV = "MIRRORBUS_STATE_DIR"
"""Names the state directory of an embedded instance (``mirrorbus up``) when no flag does."""

BUS_KEYS: Mapping[str, Kind] = {
    "url": Kind.STR,
    "urls": Kind.STRS,
    "ca_cert": Kind.STR,
    "cert": Kind.STR,
    "key": Kind.STR,
    "prefix": Kind.STR,
    "outbox": Kind.STR,
}


@dataclass(frozen=True, slots=True)
class BusConfig:
    """``[bus]`` as a config file gives it (any program's; ``outbox`` is the worker's).
    ``urls == ()`` means "not set in the file"."""

    urls: tuple[str, ...] = ()
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    prefix: str = DEFAULT_PREFIX
    outbox: Path | None = None
    """Where the worker keeps events the bus has not acknowledged yet (a SQLite file)."""


def bus_section(doc: Mapping[str, object], path: Path, warnings: list[str]) -> BusConfig:
    """The ``[bus]`` section of any config file (worker, ctl, manager, project), checked:
    relative certificate paths resolve against the file's directory, and the prefix must be
    a valid subject prefix."""
    b = section(doc, "bus", BUS_KEYS, path, warnings)
    base = path.absolute().parent
    where = Where(path, "[bus]")
    if "url" in b.values and "urls" in b.values:
        raise where.error("urls", "set either url or urls, not both")
    urls = b.texts("urls") or ((b.text("url"),) if b.text("url") else ())
    if any(not u.strip() for u in urls):
        raise where.error("urls", "empty URL")
    prefix = b.text("prefix", DEFAULT_PREFIX)
    try:
        Subjects(prefix)
    except InvalidName as exc:
        raise where.error("prefix", str(exc)) from None

    def file(key: str) -> Path | None:
        return resolve(base, b.text(key)) if b.text(key) else None

    return BusConfig(urls, file("ca_cert"), file("cert"), file("key"), prefix, file("outbox"))


@dataclass(frozen=True, slots=True)
class BusSettings:
    """How to reach NATS and who we are there (our client certificate)."""

    servers: tuple[str, ...]
    ca_cert: Path
    cert: Path
    key: Path
    prefix: str = DEFAULT_PREFIX
    inbox_prefix: str | None = None
    name: str = "mirrorbus"

    def check(self, source: str) -> None:
        """Raise ConfigError (naming ``source``) if the settings cannot work."""
        if not self.servers:
            raise ConfigError("no NATS server URL", file=source, key="bus.url")
        for key, path in (
            ("bus.ca_cert", self.ca_cert),
            ("bus.cert", self.cert),
            ("bus.key", self.key),
        ):
            if not path.is_file():
                raise ConfigError(f"file {path} does not exist", file=source, key=key)


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Limits of the streams; ``max_age`` 0 keeps events forever."""

    replicas: int = 1
    max_age: float = 0.0
    command_max_age: float = 24 * 3600.0
    duplicate_window: float = 120.0


def settings_from_paths(
    servers: Sequence[str],
    pki_dir: Path,
    role_file: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    inbox_prefix: str | None = None,
    name: str = "mirrorbus",
) -> BusSettings:
    """Settings for a certificate pair ``<role_file>.crt/.key`` in a PKI directory."""
    return BusSettings(
        servers=tuple(servers),
        ca_cert=pki_dir / "ca.crt",
        cert=pki_dir / f"{role_file}.crt",
        key=pki_dir / f"{role_file}.key",
        prefix=prefix,
        inbox_prefix=inbox_prefix,
        name=name,
    )


def from_bus_config(
    bus: BusConfig, source: Path, *, name: str, inbox_prefix: str | None = None
) -> BusSettings:
    """Turn a checked ``[bus]`` section into settings, requiring what a TLS client needs."""
    for key, value in (("ca_cert", bus.ca_cert), ("cert", bus.cert), ("key", bus.key)):
        if value is None:
            raise ConfigError(
                "missing: mutual TLS needs ca_cert, cert and key", file=source, key=f"bus.{key}"
            )
    assert bus.ca_cert and bus.cert and bus.key
    settings = BusSettings(
        servers=bus.urls,
        ca_cert=bus.ca_cert,
        cert=bus.cert,
        key=bus.key,
        prefix=bus.prefix,
        inbox_prefix=inbox_prefix,
        name=name,
    )
    settings.check(str(source))
    return settings
