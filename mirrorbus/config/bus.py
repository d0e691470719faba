"""How to reach NATS and the streams' limits: plain settings, without nats-py.

Apart from :mod:`mirrorbus.bus` (the adapter) so that reading a config or showing ``--help``
does not import the NATS client; :mod:`mirrorbus.bus` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mirrorbus.errors import ConfigError
from mirrorbus.events.subjects import DEFAULT_PREFIX

__all__ = ["STATE_DIR_ENV", "BusSettings", "StreamSettings", "settings_from_paths"]

STATE_DIR_ENV = "MIRRORBUS_STATE_DIR"
"""Names the state directory of an embedded instance (``mirrorbus up``) when no flag does."""


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
