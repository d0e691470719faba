"""The services' settings: where the worker, the manager and ``mirrorbus project`` find their
connection, and the manager's and project's config files.

Services: an explicit ``--state-dir`` (an embedded ``mirrorbus up`` instance); else the
``[bus]`` section of their config file; else ``MIRRORBUS_STATE_DIR``.  The ctl merges layers
key by key instead: :mod:`mirrorbus.config.ctl`.

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
from typing import TYPE_CHECKING

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
from mirrorbus.events.subjects import Subjects, check_token, file_token

if TYPE_CHECKING:
    from mirrorbus.host.instance import Instance

log = logging.getLogger("mirrorbus.config")
"""Where config warnings go: stderr, also from the ctl (which quiets the rest of mirrorbus)."""

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


def instance_at(root: Path) -> Instance:
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
        return instance_at(state_dir).bus_settings("worker", worker)
    if bus.urls:
        return from_bus_config(bus, config_path, name=f"worker {worker}", inbox_prefix=inbox)
    env_dir = env_state_dir()
    if env_dir is not None:
        return instance_at(env_dir).bus_settings("worker", worker)
    raise ConfigError(
        "no [bus] section: set url, ca_cert, cert and key there, or run against an embedded "
        "instance with --state-dir DIR (or MIRRORBUS_STATE_DIR)",
        file=config_path,
        key="bus",
    )


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
            return instance_at(self.state_dir).bus_settings("gateway")
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
            instance_at(state_dir).bus_settings("manager")
            if state_dir is not None
            else from_bus_config(bus, config, name="manager")
        )
        if not (database_url or url) and state_dir is not None:
            database_url = instance_at(state_dir).view_url(replica)
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
    instance = instance_at(root)
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
            instance_at(state_dir).bus_settings("reader")
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
    instance = instance_at(root)
    return ProjectConfig(
        bus=instance.bus_settings("reader"),
        view_url=view or f"sqlite:///{(root / 'project.db').resolve()}",
        outputs=OutputSettings(),
    )
