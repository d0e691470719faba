"""Where each program finds its connection settings, and the small manager config file.

Services (worker, manager): an explicit ``--state-dir`` (an embedded ``mirrorbus up``
instance); else the ``[bus]`` section of their config file; else ``MIRRORBUS_STATE_DIR``.
The ctl merges layers key by key, see :func:`ctl_settings`.

Every file is read with the worker's mechanism (:mod:`mirrorbus.config.schema`) against the
sections and keys its program reads (:data:`CTL_SECTIONS`, :data:`MANAGER_SECTIONS`,
:data:`PROJECT_SECTIONS`): an unknown one is a warning on stderr, the same line a worker
config gives (:func:`~mirrorbus.config.schema.unknown_key`); a wrong type is the same error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from mirrorbus.config.bus import (
    STATE_DIR_ENV,
    BusConfig,
    BusSettings,
    StreamSettings,
    bus_section,
    from_bus_config,
)
from mirrorbus.config.gateway import TUNASYNC_API_KEYS, GatewaySettings, gateway_settings
from mirrorbus.config.names import default_name
from mirrorbus.config.outputs import OUTPUT_SECTIONS, OutputSettings, output_settings
from mirrorbus.config.schema import Kind, read_toml, settings_table, unknown_keys
from mirrorbus.errors import ConfigError, InvalidName
from mirrorbus.events.subjects import DEFAULT_PREFIX, Subjects, check_token, file_token

if TYPE_CHECKING:
    from mirrorbus.host.instance import Instance

log = logging.getLogger("mirrorbus.config")
"""Where config warnings go: stderr, also from the ctl (which quiets the rest of mirrorbus)."""

CTL_CONFIG_PATHS = (Path("~/.config/mirrorbus/ctl.toml"), Path("/etc/mirrorbus/ctl.toml"))

DATABASE_KEYS: Mapping[str, Kind] = {"url": Kind.STR}
MANAGER_KEYS: Mapping[str, Kind] = {"name": Kind.STR}
STREAMS_KEYS: Mapping[str, Kind] = {"max_age_days": Kind.NUMBER, "replicas": Kind.INT}

Sections = Mapping[str, Mapping[str, Kind] | None]
"""The sections of a kind of file and the keys of each (None: ``[bus]``, whose keys are
checked where it is read, as a worker's)."""

CTL_SECTIONS: Sections = {"bus": None}
PROJECT_SECTIONS: Sections = {"bus": None, "database": DATABASE_KEYS, **OUTPUT_SECTIONS}
MANAGER_SECTIONS: Sections = {
    **PROJECT_SECTIONS,
    "manager": MANAGER_KEYS,
    "streams": STREAMS_KEYS,
    "tunasync_api": TUNASYNC_API_KEYS,
}


def read_config(path: Path, sections: Sections) -> tuple[BusConfig, dict[str, object]]:
    """Read a ctl, manager or project file: its checked ``[bus]`` and the whole document.
    Each unknown section or key is logged as a warning (stderr), as a worker's are; a value
    of the wrong type in any of ``sections`` is an error, whether or not a flag overrides it.
    """
    warnings: list[str] = []
    doc = read_toml(path)
    bus = bus_section(doc, path, warnings)
    unknown_keys(doc, sections, path, warnings)
    for warning in warnings:
        log.warning("%s", warning)
    for name, keys in sections.items():
        if keys is not None:
            settings_table(doc, name, keys, path)
    return bus, doc


def outbox_path(bus: BusConfig, worker: str, state_dir: Path | None) -> Path:
    """The worker's durable outbox: ``[bus] outbox``; else in the state directory of an
    embedded instance; else ``$XDG_STATE_HOME/mirrorbus`` (``~/.local/state/mirrorbus``)."""
    if bus.outbox is not None:
        return bus.outbox
    root = state_dir or (None if bus.urls else env_state_dir())
    if root is not None:
        return root / "outbox" / f"{file_token(worker, 'worker name')}.db"
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "mirrorbus" / f"outbox-{file_token(worker, 'worker name')}.db"


def _instance(root: Path) -> Instance:
    """The state directory of an embedded instance.  Imported here, when a program is given
    one: the state directory belongs to the host's side (it also writes it), and reading a
    config file must not load it."""
    from mirrorbus.host.instance import Instance

    return Instance(root)


def env_state_dir() -> Path | None:
    value = os.environ.get(STATE_DIR_ENV)
    return Path(value) if value else None


def worker_settings(
    bus: BusConfig, config_path: Path, worker: str, state_dir: Path | None
) -> BusSettings:
    inbox = Subjects.worker_inbox(worker)
    if state_dir is not None:
        return _instance(state_dir).bus_settings("worker", worker)
    if bus.urls:
        return from_bus_config(bus, config_path, name=f"worker {worker}", inbox_prefix=inbox)
    env_dir = env_state_dir()
    if env_dir is not None:
        return _instance(env_dir).bus_settings("worker", worker)
    raise ConfigError(
        "no [bus] section: set url, ca_cert, cert and key there, or run against an embedded "
        "instance with --state-dir DIR (or MIRRORBUS_STATE_DIR)",
        file=config_path,
        key="bus",
    )


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


def _from_instance(root: Path, role: str) -> dict[str, object]:
    s = _instance(root).bus_settings(role)
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
        layers.append((STATE_DIR_ENV, _from_instance(Path(env[STATE_DIR_ENV]), role)))
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
        layers.append(("--state-dir", _from_instance(flags.state_dir, role)))
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


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    bus: BusSettings
    database_url: str
    streams: StreamSettings
    outputs: OutputSettings = field(default_factory=OutputSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    state_dir: Path | None = None
    name: str = ""
    """This manager replica's name (its consumer, and its view under a state directory)."""

    def gateway_bus(self) -> BusSettings:
        """The gateway's own connection: its certificate (role ``gateway``) from the state
        directory, or ``[tunasync_api] bus_cert``/``bus_key``, else ``gateway.crt``/``.key``
        beside the manager's ``[bus] cert``."""
        if self.state_dir is not None:
            return _instance(self.state_dir).bus_settings("gateway")
        g = self.gateway
        settings = replace(
            self.bus,
            cert=g.bus_cert or self.bus.cert.parent / "gateway.crt",
            key=g.bus_key or self.bus.key.parent / "gateway.key",
            name="gateway",
        )
        for path in (settings.cert, settings.key):
            if not path.is_file():
                raise ConfigError(
                    f"the gateway's certificate {path} does not exist: `mirrorbus certs issue "
                    "gateway --dir DIR`, or set [tunasync_api] bus_cert and bus_key",
                    file="manager",
                    key="tunasync_api.bus_cert",
                )
        return settings


def manager_name(name: str | None, doc: Mapping[str, object], source: Path | str) -> str:
    """``--name``, else ``[manager] name``, else the host's name; checked like every name."""
    key = "--name"
    if name is None:
        table = settings_table(doc, "manager", MANAGER_KEYS, source)
        name = table.text("name") if "name" in table.values else None
        key = "manager.name"
    if name is None:
        return default_name()
    try:
        return check_token(name, "manager name")
    except InvalidName as exc:
        raise ConfigError(str(exc), file=source, key=key) from None


def manager_config(
    config: Path | None, state_dir: Path | None, database_url: str | None, name: str | None = None
) -> ManagerConfig:
    """Settings of ``mirrorbus manager``: ``[bus]``, ``[manager] name``, ``[database] url``,
    ``[streams]``, the status outputs ``[http]``, ``[files]``, ``[mirrorz]`` (see
    :func:`output_settings`) and tunasync's API ``[tunasync_api]`` (see
    :mod:`mirrorbus.config.gateway`).  Under a state directory each replica's view is its
    own file."""
    streams = StreamSettings()
    if config is not None:
        bus, doc = read_config(config, MANAGER_SECTIONS)
        replica = manager_name(name, doc, config)
        url = settings_table(doc, "database", DATABASE_KEYS, config).text("url")
        st = settings_table(doc, "streams", STREAMS_KEYS, config)
        max_age_days = st.number("max_age_days")
        replicas = st.integer("replicas") if "replicas" in st.values else 1
        if max_age_days < 0:
            raise ConfigError("must be a number >= 0", file=config, key="streams.max_age_days")
        if replicas not in (1, 3, 5):
            raise ConfigError("must be 1, 3 or 5", file=config, key="streams.replicas")
        streams = StreamSettings(replicas=replicas, max_age=float(max_age_days) * 86400)
        settings = (
            _instance(state_dir).bus_settings("manager")
            if state_dir is not None
            else from_bus_config(bus, config, name="manager")
        )
        if not (database_url or url) and state_dir is not None:
            database_url = _instance(state_dir).view_url(replica)
        if not (database_url or url):
            raise ConfigError(
                "missing: where this replica's status view lives, e.g. "
                "sqlite:////var/lib/mirrorbus/view.db (every manager replica needs its own)",
                file=config,
                key="database.url",
            )
        return ManagerConfig(
            bus=settings,
            database_url=database_url or url or "",
            streams=streams,
            outputs=output_settings(doc, config),
            gateway=gateway_settings(doc, config),
            state_dir=state_dir,
            name=replica,
        )
    root = state_dir or env_state_dir()
    if root is None:
        raise ConfigError(
            "no settings: pass -c manager.toml ([bus] and [database] url) or --state-dir DIR",
            file="manager",
        )
    instance = _instance(root)
    replica = manager_name(name, {}, "manager")
    if replica == default_name():
        instance.adopt_legacy_view(replica)
    return ManagerConfig(
        bus=instance.bus_settings("manager"),
        name=replica,
        database_url=database_url or instance.view_url(replica),
        # An `up --cluster` instance keeps its streams at three replicas (the manager
        # updates the streams to these settings at start).
        streams=StreamSettings(replicas=instance.read().replicas),
        state_dir=root,
    )


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    bus: BusSettings
    view_url: str
    outputs: OutputSettings


def project_config(config: Path | None, state_dir: Path | None, view: str | None) -> ProjectConfig:
    """Settings of ``mirrorbus project``: ``[bus]`` with a reader certificate, its own view
    (``--view`` or ``[database] url``; default ``STATE/project.db`` with ``--state-dir``) and
    the outputs of :func:`output_settings`."""
    if config is not None:
        bus, doc = read_config(config, PROJECT_SECTIONS)
        url = view or settings_table(doc, "database", DATABASE_KEYS, config).text("url")
        if not url:
            raise ConfigError(
                "missing: where this tool keeps its own view and position, e.g. "
                "sqlite:////var/lib/mirrorbus/project.db (or --view)",
                file=config,
                key="database.url",
            )
        settings = (
            _instance(state_dir).bus_settings("reader")
            if state_dir is not None
            else from_bus_config(bus, config, name="project")
        )
        return ProjectConfig(bus=settings, view_url=url, outputs=output_settings(doc, config))
    root = state_dir or env_state_dir()
    if root is None:
        raise ConfigError(
            "no settings: pass -c project.toml ([bus] with a reader certificate) or "
            "--state-dir DIR",
            file="project",
        )
    instance = _instance(root)
    return ProjectConfig(
        bus=instance.bus_settings("reader"),
        view_url=view or f"sqlite:///{(root / 'project.db').resolve()}",
        outputs=OutputSettings(),
    )
