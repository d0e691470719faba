"""Where the ctl finds its connection settings: files, environment and flags, merged key by
key (:func:`ctl_settings`).

A ctl file (``ctl.toml``) holds a ``[bus]`` section only, read as every file's is
(:func:`mirrorbus.config.site.read_config`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from mirrorbus.config.bus import STATE_DIR_ENV, BusSettings
from mirrorbus.config.site import CTL_SECTIONS, instance_at, read_config
from mirrorbus.errors import ConfigError
from mirrorbus.events.subjects import DEFAULT_PREFIX

CTL_CONFIG_PATHS = (Path("~/.config/mirrorbus/ctl.toml"), Path("/etc/mirrorbus/ctl.toml"))
"""The user's file, then the system's: the user's keys win."""


@dataclass(frozen=True, slots=True)
class BusFlags:
    """Connection settings given on the command line (None: not given)."""

    state_dir: Path | None = None
    url: str | None = None
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    prefix: str | None = None


_KEYS = ("servers", "ca_cert", "cert", "key", "prefix")


def _frominstance_at(root: Path, role: str) -> dict[str, object]:
    s = instance_at(root).bus_settings(role)
    return {
        "servers": s.servers,
        "ca_cert": s.ca_cert,
        "cert": s.cert,
        "key": s.key,
        "prefix": s.prefix,
    }


def _from_file(path: Path) -> dict[str, object]:
    bus, _ = read_config(path, CTL_SECTIONS)
    return {
        "servers": bus.urls or None,
        "ca_cert": bus.ca_cert,
        "cert": bus.cert,
        "key": bus.key,
        "prefix": bus.prefix,
    }


def ctl_settings(
    config: Path | None = None,
    state_dir: Path | None = None,
    role: str = "admin",
    *,
    flags: BusFlags | None = None,
    environ: Mapping[str, str] | None = None,
) -> BusSettings:
    """The ctl's connection settings, each key from the last place that gives it:

    ``/etc/mirrorbus/ctl.toml`` < ``~/.config/mirrorbus/ctl.toml`` < ``-c FILE`` <
    environment (``MIRRORBUS_STATE_DIR``, then ``MIRRORBUS_URL``, ``MIRRORBUS_CA_CERT``,
    ``MIRRORBUS_CERT``, ``MIRRORBUS_KEY``, ``MIRRORBUS_PREFIX``) < flags (``--state-dir``,
    then ``--url``, ``--ca-cert``, ``--cert``, ``--key``, ``--prefix``).  A state directory
    (of ``mirrorbus up``) gives every key, with the ``role`` certificate.
    """
    flags = flags or BusFlags(state_dir=state_dir)
    if state_dir is not None and flags.state_dir is None:
        flags = replace(flags, state_dir=state_dir)
    env = os.environ if environ is None else environ
    layers: list[tuple[str, dict[str, object]]] = []
    for candidate in reversed(CTL_CONFIG_PATHS):  # system first, then the user's
        path = candidate.expanduser()
        if path.is_file():
            layers.append((str(path), _from_file(path)))
    if config is not None:
        layers.append((str(config), _from_file(config)))
    if env.get(STATE_DIR_ENV):
        layers.append((STATE_DIR_ENV, _frominstance_at(Path(env[STATE_DIR_ENV]), role)))
    layers.append(
        (
            "environment",
            {
                "servers": tuple(u for u in env.get("MIRRORBUS_URL", "").split(",") if u) or None,
                "ca_cert": Path(env["MIRRORBUS_CA_CERT"]) if env.get("MIRRORBUS_CA_CERT") else None,
                "cert": Path(env["MIRRORBUS_CERT"]) if env.get("MIRRORBUS_CERT") else None,
                "key": Path(env["MIRRORBUS_KEY"]) if env.get("MIRRORBUS_KEY") else None,
                "prefix": env.get("MIRRORBUS_PREFIX") or None,
            },
        )
    )
    if flags.state_dir is not None:
        layers.append(("--state-dir", _frominstance_at(flags.state_dir, role)))
    layers.append(
        (
            "flags",
            {
                "servers": tuple(u for u in (flags.url or "").split(",") if u) or None,
                "ca_cert": flags.ca_cert,
                "cert": flags.cert,
                "key": flags.key,
                "prefix": flags.prefix,
            },
        )
    )
    merged: dict[str, object] = {}
    for _source, values in layers:
        merged.update({k: v for k, v in values.items() if v is not None})
    missing = [k for k in _KEYS if k != "prefix" and k not in merged]
    if missing:
        raise ConfigError(
            f"no {', '.join(missing)}: pass --state-dir DIR (an embedded `mirrorbus up` "
            "instance), -c ctl.toml with a [bus] section, MIRRORBUS_STATE_DIR, or "
            "--url/--ca-cert/--cert/--key",
            file="ctl",
        )
    settings = BusSettings(
        servers=cast(tuple[str, ...], merged["servers"]),
        ca_cert=cast(Path, merged["ca_cert"]),
        cert=cast(Path, merged["cert"]),
        key=cast(Path, merged["key"]),
        prefix=cast(str, merged.get("prefix", DEFAULT_PREFIX)),
        name="ctl",
    )
    settings.check(" < ".join(source for source, _ in layers))
    return settings
