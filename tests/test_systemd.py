"""The systemd units of ``examples/systemd/`` and the programs' notifications to systemd.

No systemd runs here: the test plays it.  It follows the README's "Under systemd" steps with
every path moved into a temporary directory (``/etc/mirrorbus`` -> ``TMP/etc/mirrorbus``,
...), reads ``ExecStart``/``ExecReload`` from the unit files, runs them with a notify socket
of its own (one a path, one in the abstract namespace, as systemd may give either) and checks
what systemd would see: ``READY=1`` only once the program serves on the bus (a worker started
before nats-server says it only after the server is up, and at once answers over the bus),
``WATCHDOG=1`` pings after it, ``RELOADING=1`` then ``READY=1`` around ``systemctl reload``,
``STOPPING=1`` and exit status 0 on SIGTERM.  ``systemd-analyze verify`` checks the unit
files themselves where it is installed.
"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from e2e import PYTHON, Site, wait_for

from mirrorbus.host.server import find_nats_server, free_port
from mirrorbus.sdnotify import Notifier

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "examples" / "systemd"
UNIT_NAMES = (
    "mirrorbus-nats.service",
    "mirrorbus-manager.service",
    "mirrorbus-worker@.service",
    "mirrorbus-project.service",
)

RUN = ("/opt/mirrorbus/bin/mirrorbus ", "install ", "cp examples/systemd/manager.toml ")
"""README steps the test runs; the others need root or systemd and are only recognised."""
RECOGNISED = ("python3 -m venv ", "useradd ", "chown ", "cp examples/systemd/*.service ")


def readme_steps() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Under systemd\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text())
    return parser["Service"]


class NotifySocket:
    """A datagram socket like the one systemd gives a ``Type=notify`` service."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[list[str]] = []

    def drain(self) -> list[list[str]]:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return self.messages
            self.messages.append(data.decode().split("\n"))

    def lines(self) -> list[str]:
        return [line for message in self.drain() for line in message]

    def wait(self, line: str, count: int = 1, after: int = 0, timeout: float = 60) -> int:
        """Wait until ``line`` came ``count`` times in messages after index ``after``;
        the index of the message that made it so."""

        def seen() -> int | None:
            found = [i for i, m in enumerate(self.drain()) if i >= after and line in m]
            return found[count - 1] + 1 if len(found) >= count else None

        return wait_for(seen, timeout, f"{line} x{count} on {self.address}") - 1

    def close(self) -> None:
        self.sock.close()


@dataclass
class Machine:
    """The README's machine, inside ``root``."""

    root: Path
    port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def map(self, text: str) -> str:
        for old, new in (
            ("/opt/mirrorbus/bin/mirrorbus", f"{sys.executable} -m mirrorbus"),
            ("/opt/mirrorbus/bin/nats-server", str(find_nats_server())),
            ("/etc/mirrorbus", str(self.root / "etc/mirrorbus")),
            ("/var/lib/mirrorbus", str(self.root / "var/lib/mirrorbus")),
            ("/var/log/mirrorbus", str(self.root / "var/log/mirrorbus")),
            ("0.0.0.0:14222", f"127.0.0.1:{self.port}"),
            ("nats.example.org:14222", f"localhost:{self.port}"),
            ("nats.example.org", "localhost"),
            ("14280", str(self.http_port)),
        ):
            text = text.replace(old, new)
        return text

    def follow_readme(self) -> None:
        for step in readme_steps():
            if step.startswith(RUN):
                result = subprocess.run(
                    ["bash", "-c", self.map(step)], cwd=ROOT, capture_output=True, text=True
                )
                assert result.returncode == 0, f"{step}: {result.stderr}"
            else:
                assert step.startswith(RECOGNISED) or step.startswith("systemctl "), step
        for config in (self.root / "etc/mirrorbus").glob("*.toml"):
            config.write_text(self.map(config.read_text()))

    def start(
        self, name: str, notify: NotifySocket | None, instance: str = ""
    ) -> subprocess.Popen[bytes]:
        """What systemd does for ``systemctl start``: the directories, then ExecStart."""
        service = unit(name)
        for key, base in (("StateDirectory", "var/lib"), ("LogsDirectory", "var/log")):
            if key in service:
                (self.root / base / service[key]).mkdir(parents=True, exist_ok=True)
        argv = shlex.split(self.map(service["ExecStart"].replace("%i", instance)))
        env = dict(os.environ)
        if notify is not None:
            assert service["Type"] == "notify"
            env["NOTIFY_SOCKET"] = notify.address
            env["WATCHDOG_USEC"] = "400000"  # WatchdogSec=30 would make a slow test
        key = name.replace("@", f"@{instance}")
        with open(self.root / f"{key}.out", "ab") as out:
            proc = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.procs[key] = proc
        return proc

    def output(self, key: str) -> str:
        path = self.root / f"{key}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        pki = self.root / "etc/mirrorbus/pki"
        flags = ["--url", f"tls://localhost:{self.port}", "--ca-cert", str(pki / "ca.crt")]
        flags += ["--cert", str(pki / "admin.crt"), "--key", str(pki / "admin.key")]
        env = dict(os.environ)
        return subprocess.run(
            [sys.executable, "-m", "mirrorbus", "ctl", *flags, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    m = Machine(tmp_path / "machine")
    m.root.mkdir()
    try:
        yield m
    finally:
        m.stop_all()


@pytest.mark.e2e
def test_the_readme_setup_runs_under_systemd_like_supervision(
    machine: Machine, tmp_path: Path
) -> None:
    machine.follow_readme()
    nats_conf = machine.root / "etc/mirrorbus/nats.conf"
    assert "CN=mirrorbus-worker-mirror1" in nats_conf.read_text()

    worker_socket = NotifySocket(str(tmp_path / "worker.notify"))
    manager_socket = NotifySocket(f"@mirrorbus-test-{uuid.uuid4().hex}")
    try:
        # A worker started before nats-server: activating, trying the bus, not ready.  The
        # port first belongs to the test, which sees the worker knock and shuts the door.
        with socket.create_server(("127.0.0.1", machine.port)) as door:
            worker = machine.start("mirrorbus-worker@.service", worker_socket, "mirror1")
            out = "mirrorbus-worker@mirror1.service"
            door.settimeout(30)
            knock, _ = door.accept()
            knock.close()
        worker_socket.wait("STATUS=connecting to tls://localhost:" + str(machine.port))
        assert "READY=1" not in worker_socket.lines()

        machine.start("mirrorbus-nats.service", None)
        # The manager makes the streams the worker restores from: it is ready first.
        machine.start("mirrorbus-manager.service", manager_socket)
        manager_ready = manager_socket.wait("READY=1")
        listed = machine.ctl("list", "--all")  # the query service answers at once
        assert listed.returncode == 0, listed.stderr
        manager_socket.wait("WATCHDOG=1", count=2, after=manager_ready)

        ready = worker_socket.wait("READY=1")
        # Ready means serving: its log server answers over the bus right away.
        answer = machine.ctl("logs", "-w", "mirror1", "hello")
        assert "no answer from worker" not in answer.stderr, answer.stderr
        worker_socket.wait("WATCHDOG=1", count=2, after=ready)
        wait_for(
            lambda: (
                (r := machine.ctl("list", "--all")).returncode == 0
                and "hello" in r.stdout
                and "success" in r.stdout
            ),
            60,
            "the example job to succeed",
        )
        workdir = machine.root / "var/lib/mirrorbus/mirrors/hello"
        assert (workdir / "file3.txt").read_text() == "file 3\n"

        # systemctl reload: the unit's ExecReload with $MAINPID.
        reload = shlex.split(
            unit("mirrorbus-worker@.service")["ExecReload"].replace("$MAINPID", str(worker.pid))
        )
        before = len(worker_socket.drain())
        subprocess.run(reload, check=True, timeout=10)
        reloading = worker_socket.wait("RELOADING=1", after=before)
        worker_socket.wait("READY=1", after=reloading + 1)

        # systemctl stop: SIGTERM, STOPPING=1, a clean exit.
        worker_socket.drain()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, machine.output(out)
        assert "STOPPING=1" in worker_socket.lines()
        manager = machine.procs["mirrorbus-manager.service"]
        manager_socket.drain()  # systemd reads all the time; the queue holds a few only
        manager.send_signal(signal.SIGTERM)
        assert manager.wait(60) == 0
        assert "STOPPING=1" in manager_socket.lines()
    finally:
        worker_socket.close()
        manager_socket.close()


def test_notifications_go_nowhere_without_systemd_and_variables_do_not_leak() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1", "PATH": "/"}
    notifier = Notifier.from_environment(env)
    assert env == {"PATH": "/"}  # jobs started later do not inherit them
    assert notifier.enabled and notifier.watchdog_interval is None  # another pid's watchdog
    silent = Notifier.from_environment({})
    assert not silent.enabled and silent.ready("x") is False


@pytest.mark.e2e
def test_systemd_analyze_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt install systemd)")
    # The units name /opt/mirrorbus/bin/...; verify checks that ExecStart is executable.
    venv_bin = Path(sys.executable).parent
    files = []
    for name in UNIT_NAMES:
        text = (UNITS / name).read_text()
        text = text.replace("/opt/mirrorbus/bin/nats-server", str(find_nats_server()))
        text = text.replace("/opt/mirrorbus/bin/", f"{venv_bin}/")
        target = tmp_path / name.replace("@.", "@mirror1.")
        target.write_text(text)
        files.append(str(target))
    result = subprocess.run(
        [analyze, "verify", "--man=no", *files], capture_output=True, text=True, timeout=120
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # Not about the units: this container has no running systemd.
        if line.strip() and "System has not been booted with systemd" not in line
    ]
    assert result.returncode == 0 and problems == [], "\n".join(problems)


def test_the_units_say_what_the_programs_do() -> None:
    worker, manager = unit("mirrorbus-worker@.service"), unit("mirrorbus-manager.service")
    project = unit("mirrorbus-project.service")
    assert worker["Type"] == manager["Type"] == project["Type"] == "notify"
    assert worker["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert worker["Delegate"] == "yes"  # [cgroup] needs its own subtree
    for service in (worker, manager, project, unit("mirrorbus-nats.service")):
        assert service["NoNewPrivileges"] == service["PrivateTmp"] == "yes"
        assert service["ProtectSystem"] in ("full", "strict")


def test_a_worker_waiting_for_the_streams_stops_at_once(site: Site) -> None:
    """``systemctl stop`` of a worker still restoring (no manager has made the streams yet)
    ends it cleanly instead of waiting for TimeoutStopSec and SIGKILL."""
    site.start_worker(site.worker_config("w1", ""), key="worker")
    wait_for(lambda: "cannot restore yet" in site.output("worker"), 30, "the worker to wait")
    assert site.stop("worker", timeout=30) == 0


def test_a_full_notify_socket_drops_notifications_rather_than_blocking(tmp_path: Path) -> None:
    """A receiver that does not read must not stop the service's event loop (the first
    version blocked in send() once the socket's queue was full, and the manager stopped
    answering queries)."""
    receiver = NotifySocket(str(tmp_path / "notify"))
    notifier = Notifier(receiver.address)
    results: list[bool] = []
    sender = threading.Thread(
        target=lambda: results.extend(notifier.notify("WATCHDOG=1") for _ in range(500))
    )
    try:
        sender.start()
        sender.join(30)
        assert not sender.is_alive(), "notify blocked on a full socket"
        assert False in results  # some were dropped ...
        assert len(receiver.drain()) == results.count(True)  # ... and the others arrived
    finally:
        receiver.close()


@pytest.mark.e2e
@pytest.mark.parametrize("program", ["manager", "worker"])
def test_a_service_stopped_while_connecting_exits_cleanly(
    program: str, pki_dir: Path, tmp_path: Path
) -> None:
    """``systemctl stop`` while NATS does not answer yet (the unit is still "activating"):
    SIGTERM ends the program with status 0, not killed by the signal."""
    site = Site.create(tmp_path / "site", pki_dir, free_port())  # nobody listens there
    notify = NotifySocket(str(tmp_path / "notify"))
    argv = [*PYTHON, program, "--state-dir", str(site.root)]
    if program == "worker":
        argv += ["-c", str(site.worker_config("w1", ""))]
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = notify.address
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        notify.wait("STATUS=connecting to tls://127.0.0.1:" + str(site.port), timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
        assert "STOPPING=1" in notify.lines() and "READY=1" not in notify.lines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()


def test_project_says_ready_once_it_serves(site: Site, tmp_path: Path) -> None:
    """``mirrorbus project`` under systemd: READY=1 once its outputs run (its HTTP server
    answers at once), then watchdog pings."""
    site.start_manager()
    notify = NotifySocket(f"@mirrorbus-test-{uuid.uuid4().hex}")
    port = free_port()
    argv = [*PYTHON, "project", "http", "--state-dir", str(site.root)]
    argv += ["--view", str(tmp_path / "project.db"), "--http", f"127.0.0.1:{port}"]
    env = dict(os.environ)
    env |= {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        ready = notify.wait("READY=1", timeout=60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as r:
            assert r.status == 200
        notify.wait("WATCHDOG=1", count=2, after=ready)
        notify.drain()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "STOPPING=1" in notify.lines()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()


def test_project_waiting_for_the_stream_stops_cleanly(site: Site, tmp_path: Path) -> None:
    """Started before any manager made the stream, it waits; SIGTERM then ends it with 0."""
    argv = [*PYTHON, "project", "jobs-json", "--state-dir", str(site.root)]
    argv += ["--view", str(tmp_path / "project.db"), "--jobs-json", str(tmp_path / "j.json")]
    site._spawn("project", argv)
    wait_for(lambda: "waiting for the manager" in site.output("project"), 30, "the wait")
    assert site.stop("project", timeout=30) == 0
