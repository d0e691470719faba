"""The state directory of an embedded instance (``mirrorbus up``) and how to reach it.

    STATE/
      instance.json        host, port and subject prefix of the embedded nats-server
      pki/                 CA, server and client certificates (keys 0600)
      nats/nats.conf       rendered server config (TLS verify_and_map, roles, JetStream)
      nats/jetstream/      the event log
      manager.db           the SQLite status view
      logs/                output of nats-server, the manager and the worker

``ctl``, ``worker`` and ``manager`` accept ``--state-dir`` (or ``MIRRORBUS_STATE_DIR``) and read
the connection settings from here, each with its own certificate.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from mirrorbus.bus import BusSettings, settings_from_paths
from mirrorbus.errors import ConfigError
from mirrorbus.events.subjects import DEFAULT_PREFIX, Subjects

STATE_DIR_ENV = "MIRRORBUS_STATE_DIR"
DEFAULT_STATE_DIR = Path("mirrorbus-state")


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or DEFAULT_STATE_DIR)


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    host: str
    port: int
    prefix: str = DEFAULT_PREFIX

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tls://{host}:{self.port}"


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

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def db_path(self) -> Path:
        return self.root / "manager.db"

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
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.info_file.with_suffix(".json.tmp")
        tmp.write_text(
            json.dumps({"host": info.host, "port": info.port, "prefix": info.prefix}, indent=2)
            + "\n"
        )
        tmp.replace(self.info_file)

    def bus_settings(self, role: str, name: str | None = None) -> BusSettings:
        """Connection settings for ``role`` (manager, admin, reader, worker NAME)."""
        info = self.read()
        if role == "worker":
            if name is None:
                raise ConfigError("a worker needs its name", file=self.root)
            return settings_from_paths(
                [info.url],
                self.pki_dir,
                f"worker-{name}",
                prefix=info.prefix,
                inbox_prefix=Subjects.worker_inbox(name),
                name=f"worker {name}",
            )
        return settings_from_paths([info.url], self.pki_dir, role, prefix=info.prefix, name=role)
