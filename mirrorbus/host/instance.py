"""The state directory of an embedded instance (``mirrorbus up``) and how to reach it.

    STATE/
      instance.json        host, port(s) and subject prefix of the embedded nats-server(s)
      pki/                 CA, server, route and client certificates (keys 0600)
      nats/nats.conf       rendered server config (TLS verify_and_map, roles, JetStream)
      nats/jetstream/      the event log
      nats/node-N/         with ``up --cluster``: node N's nats.conf and jetstream/ (N = 1..3)
      manager-NAME.db      the SQLite status view of manager replica NAME (one per replica)
      logs/                output of nats-server, the manager and the worker

``ctl``, ``worker`` and ``manager`` accept ``--state-dir`` (or ``MIRRORBUS_STATE_DIR``) and read
the connection settings from here, each with its own certificate.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mirrorbus.config.bus import STATE_DIR_ENV
from mirrorbus.dirs import make_dirs
from mirrorbus.errors import ConfigError
from mirrorbus.events.subjects import DEFAULT_PREFIX, Subjects, check_token

if TYPE_CHECKING:
    # The layout of a state directory is read by `up`'s supervisor too, which never
    # connects: nats-py is imported where settings to connect with are made.
    from mirrorbus.config.bus import BusSettings

DEFAULT_STATE_DIR = Path("mirrorbus-state")


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """Where the embedded server listens.

    ``ports`` lists the client port of every node of an ``up --cluster`` instance (the first
    is ``port``); it is empty for a single server, whose instance.json has no ``ports`` key,
    so files written before clusters existed still read the same.
    """

    host: str
    port: int
    prefix: str = DEFAULT_PREFIX
    ports: tuple[int, ...] = ()

    @property
    def clustered(self) -> bool:
        return len(self.ports) > 1

    @property
    def node_ports(self) -> tuple[int, ...]:
        """The client port of every node (just ``port`` for a single server)."""
        return self.ports or (self.port,)

    @property
    def replicas(self) -> int:
        """Replicas of the streams: one on each node (1, or 3 for a cluster)."""
        return len(self.node_ports)

    @property
    def url(self) -> str:
        return self.node_url(self.port)

    @property
    def urls(self) -> tuple[str, ...]:
        """Every node's URL: clients get all of them and move to another when one dies."""
        return tuple(self.node_url(p) for p in self.node_ports)

    def node_url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tls://{host}:{port}"


@dataclass(frozen=True, slots=True)
class Instance:
    root: Path

    @property
    def info_file(self) -> Path:
        return self.root / "instance.json"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def nats_dir(self) -> Path:
        return self.root / "nats"

    @property
    def nats_conf(self) -> Path:
        return self.nats_dir / "nats.conf"

    @property
    def store_dir(self) -> Path:
        return self.nats_dir / "jetstream"

    def node_dir(self, node: int) -> Path:
        """Config and JetStream store of cluster node ``node`` (1-based)."""
        return self.nats_dir / f"node-{node}"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def view_path(self, replica: str) -> Path:
        """The SQLite view of manager replica ``replica``: each replica has its own."""
        return self.root / f"manager-{check_token(replica, 'manager name')}.db"

    def view_url(self, replica: str) -> str:
        return f"sqlite:///{self.view_path(replica).resolve()}"

    @property
    def legacy_db_path(self) -> Path:
        """The one view of a state directory made before managers were replicas."""
        return self.root / "manager.db"

    def adopt_legacy_view(self, replica: str) -> None:
        """Rename a view made before managers had names to ``replica``'s, if that has none:
        its position and its consumer's are lost anyway, but not the view (the log may have
        aged out)."""
        target = self.view_path(replica)
        if not self.legacy_db_path.exists() or target.exists():
            return
        for suffix in ("-wal", "-shm", ""):  # the database file last: it marks the move done
            old = self.legacy_db_path.with_name(self.legacy_db_path.name + suffix)
            if old.exists():
                old.replace(target.with_name(target.name + suffix))

    @property
    def db_path(self) -> Path:
        """The view of the replica a manager started without a name uses."""
        from mirrorbus.config.names import default_name

        return self.view_path(default_name())

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path.resolve()}"

    def read(self) -> InstanceInfo:
        try:
            raw = json.loads(self.info_file.read_text())
            return InstanceInfo(
                host=str(raw["host"]),
                port=int(raw["port"]),
                prefix=str(raw.get("prefix", DEFAULT_PREFIX)),
                ports=tuple(int(p) for p in raw.get("ports", ())),
            )
        except FileNotFoundError:
            raise ConfigError(
                "not a mirrorbus state directory (no instance.json); "
                "start one with `mirrorbus up -c worker.toml --state-dir DIR`",
                file=self.root,
            ) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"unreadable: {exc}", file=self.info_file) from None

    def write(self, info: InstanceInfo) -> None:
        """Write instance.json atomically (temp file + rename)."""
        make_dirs(self.root, 0o700)
        tmp = self.info_file.with_suffix(".json.tmp")
        raw: dict[str, object] = {"host": info.host, "port": info.port, "prefix": info.prefix}
        if info.ports:
            raw["ports"] = list(info.ports)
        tmp.write_text(json.dumps(raw, indent=2) + "\n")
        tmp.replace(self.info_file)

    def bus_settings(self, role: str, name: str | None = None) -> BusSettings:
        """Connection settings for ``role`` (manager, admin, reader, worker NAME)."""
        from mirrorbus.config.bus import settings_from_paths

        info = self.read()
        if role == "worker":
            # pki's module imports cryptography, which a connecting client does not need.
            from mirrorbus.host.pki import cert_stem

            if name is None:
                raise ConfigError("a worker needs its name", file=self.root)
            return settings_from_paths(
                info.urls,
                self.pki_dir,
                cert_stem("worker", name),
                prefix=info.prefix,
                inbox_prefix=Subjects.worker_inbox(name),
                name=f"worker {name}",
            )
        return settings_from_paths(info.urls, self.pki_dir, role, prefix=info.prefix, name=role)
