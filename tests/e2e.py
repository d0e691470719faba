"""End-to-end harness: a site of real processes around the ``nats_server`` fixture.

A :class:`Site` is a state directory like the one ``mirrorbus up`` makes (``instance.json`` and
the test PKI), so the real CLI runs against it with ``--state-dir``: ``mirrorbus manager``
and ``mirrorbus worker`` as child processes, ``mirrorbus ctl`` as a command.  Tests look at
what a user would: the SQL view, the ctl output, files and processes.

Every wait is bounded (:func:`wait_for`); every process is stopped at teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mirrorbus.events import JobState
from mirrorbus.events.wire import RunRow
from mirrorbus.host.instance import Instance, InstanceInfo
from projections.status_view import StatusView

T = TypeVar("T")

PYTHON = [sys.executable, "-m", "mirrorbus"]


def wait_for(
    probe: Callable[[], T | None],
    timeout: float = 20.0,
    what: str = "condition",
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def up_children(state: Path, *, nodes: bool = False) -> dict[str, int]:
    """pid of each live process a ``mirrorbus up`` on ``state`` supervises, from /proc:
    ``manager`` (or ``manager-NAME`` for each of ``--managers N``), ``worker`` and
    ``nats-server`` (or, with ``nodes``, each cluster node by the
    name of its directory: ``node-1`` ...)."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in args if a]
        if not any(str(state) in a for a in text) or not alive(int(proc.name)):
            continue
        if text[1:3] == ["-m", "mirrorbus"] and text[3] in ("manager", "worker"):
            name = text[text.index("--name") + 1] if "--name" in text else ""
            found[f"{text[3]}-{name}" if name else text[3]] = int(proc.name)
        elif text[0].endswith("nats-server"):
            found[Path(text[-1]).parent.name if nodes else "nats-server"] = int(proc.name)
    return found


@dataclass
class Site:
    root: Path
    port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    _view: StatusView | None = None

    @classmethod
    def create(cls, root: Path, pki_dir: Path, port: int) -> Site:
        root.mkdir(parents=True, exist_ok=True)
        (root / "pki").symlink_to(pki_dir)
        Instance(root).write(InstanceInfo(host="127.0.0.1", port=port))
        return cls(root=root, port=port)

    @property
    def instance(self) -> Instance:
        return Instance(self.root)

    @property
    def db_url(self) -> str:
        return self.instance.db_url

    # -- configs ------------------------------------------------------------------------
    def worker_config(
        self, name: str, jobs: str, *, concurrent: int = 4, retry: int = 1, interval: float = 60
    ) -> Path:
        """Write a tunasync worker config for ``name`` with the given ``[[mirrors]]`` text."""
        path = self.root / f"{name}.toml"
        path.write_text(
            "[global]\n"
            f'name = "{name}"\n'
            f'mirror_dir = "{self.root}/mirrors/{name}"\n'
            f'log_dir = "{self.root}/logs/{name}/{{{{.Name}}}}"\n'
            f"concurrent = {concurrent}\n"
            f"retry = {retry}\n"
            f"interval = {interval}\n\n" + jobs
        )
        return path

    def ctl_config(self, role: str = "reader") -> Path:
        """A ctl config whose ``[bus]`` uses the ``role`` certificate (e.g. a reader's)."""
        pki = self.root / "pki"
        path = self.root / f"{role}-ctl.toml"
        path.write_text(
            f'[bus]\nurl = "tls://127.0.0.1:{self.port}"\nca_cert = "{pki / "ca.crt"}"\n'
            f'cert = "{pki / f"{role}.crt"}"\nkey = "{pki / f"{role}.key"}"\n'
        )
        return path

    def workdir(self, worker: str, job: str) -> Path:
        return self.root / "mirrors" / worker / job

    # -- processes ----------------------------------------------------------------------
    def _spawn(self, key: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.root / f"{key}.out"
        self.logs[key] = log
        env = dict(os.environ)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.procs[key] = proc
        return proc

    def start_manager(self, name: str | None = None, *args: str) -> subprocess.Popen[bytes]:
        """``mirrorbus manager`` (replica ``name``, key ``manager-NAME``; else the default
        name, key ``manager``) with extra ``args``."""
        argv = [*PYTHON, "manager", "--state-dir", str(self.root), "-v", *args]
        if name is None:
            return self._spawn("manager", argv)
        return self._spawn(f"manager-{name}", [*argv, "--name", name])

    def start_worker(
        self, config: Path, key: str | None = None, *args: str
    ) -> subprocess.Popen[bytes]:
        """``mirrorbus worker -c config -v`` (key ``worker-STEM`` unless given) with extra
        ``args``."""
        key = key or f"worker-{config.stem}"
        return self._spawn(
            key,
            [*PYTHON, "worker", "-c", str(config), "--state-dir", str(self.root), "-v", *args],
        )

    def stop(self, key: str, timeout: float = 30) -> int:
        """SIGTERM and wait: the clean stop a service manager would do."""
        proc = self.procs.pop(key)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def kill(self, key: str) -> None:
        proc = self.procs.pop(key)
        proc.kill()
        proc.wait(10)

    def output(self, key: str) -> str:
        path = self.logs.get(key)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def close(self) -> None:
        for key in list(self.procs):
            try:
                self.stop(key, timeout=15)
            except subprocess.TimeoutExpired:
                self.kill(key)
        if self._view is not None:
            self._view.close()

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        return subprocess.run(
            [*PYTHON, "ctl", "--state-dir", str(self.root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PYTHON, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    # -- the view -----------------------------------------------------------------------
    @property
    def view(self) -> StatusView:
        if self._view is None:
            wait_for(lambda: self.instance.db_path.exists(), what="the manager's database")
            self._view = StatusView(self.db_url)
        return self._view

    def job(self, worker: str, name: str) -> JobState | None:
        return next((j for j in self.view.jobs(worker) if j.name == name), None)

    def wait_job(
        self,
        worker: str,
        name: str,
        probe: Callable[[JobState], bool],
        timeout: float = 20.0,
        what: str = "",
    ) -> JobState:
        def check() -> JobState | None:
            state = self.job(worker, name)
            return state if state is not None and probe(state) else None

        try:
            return wait_for(check, timeout, what or f"{worker}/{name}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; last state: {self.job(worker, name)}\n{self.tail_logs()}"
            ) from None

    def rebuild(self, into: Path, *source: str) -> dict[str, list[tuple[object, ...]]]:
        """``mirrorbus manager rebuild --into`` a fresh SQLite file (from this site's state
        directory, or the given ``-c FILE`` arguments); return the rebuilt view's ``dump()``."""
        args = source or ("--state-dir", str(self.root))
        out = self.cli("manager", "rebuild", *args, "--into", f"sqlite:///{into}")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"rebuilt sqlite:///{into} up to event ")
        other = StatusView(f"sqlite:///{into}")
        try:
            return other.dump()
        finally:
            other.close()

    def runs(self, worker: str, name: str) -> list[RunRow]:
        return self.view.history(worker, name, limit=1000)

    def tail_logs(self, lines: int = 15) -> str:
        parts = []
        for key in self.logs:
            text = self.output(key).splitlines()[-lines:]
            parts.append(f"--- {key}\n" + "\n".join(text))
        return "\n".join(parts)


def count_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
