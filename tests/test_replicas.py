"""Manager replicas against a real nats-server and real processes (issue 21).

Each replica has a name, its own consumer on the event log and its own SQLite view; queries
go to whichever replica is alive.  Checked here as an operator would see it: the views (files),
``ctl`` output, the stream's consumers, and what a second manager with a live name prints.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import nats.errors
import nats.js.errors
import pytest
from conftest import RunningServer, connect, permission_violations
from e2e import Site, count_lines, wait_for
from nats.js.api import AckPolicy, ConsumerConfig
from sqlalchemy import create_engine, text
from test_drills import _subject as drill_subject
from test_drills import append_as_worker, generated_history
from test_e2e_worker import COUNTING_JOB, SLEEPING_JOB

from mirrorbus.bus import connect as bus_connect
from mirrorbus.bus import settings_from_paths
from mirrorbus.control import Control
from mirrorbus.errors import BusError
from mirrorbus.events import Subjects, encode
from mirrorbus.host.instance import Instance
from mirrorbus.host.server import free_port
from projections.status_view import StatusView

pytestmark = pytest.mark.e2e

S = Subjects()


def last_sequence(server: RunningServer) -> int:
    async def ask() -> int:
        nc = await connect(server, "admin")
        try:
            return int((await nc.jetstream().stream_info(S.evt_stream)).state.last_seq)
        finally:
            await nc.close()

    return anyio.run(ask)


def delivered(server: RunningServer, replica: str) -> int:
    """The last stream sequence replica ``replica``'s own consumer delivered (asked as a
    manager: no other role may look at a consumer)."""

    async def ask() -> int:
        nc = await connect(server, "manager")
        try:
            info = await nc.jetstream().consumer_info(S.evt_stream, S.manager_consumer(replica))
            return int(info.delivered.stream_seq)
        finally:
            await nc.close()

    return anyio.run(ask)


@contextmanager
def views(site: Site, *names: str) -> Iterator[dict[str, StatusView]]:
    opened = {n: StatusView(site.instance.view_url(n)) for n in names}
    try:
        yield opened
    finally:
        for view in opened.values():
            view.close()


def start_replicas(site: Site, *names: str, http: dict[str, int] | None = None) -> None:
    """Start replicas ``names`` (each with ``--http 127.0.0.1:PORT`` from ``http``) and
    wait until each is ready."""
    for name in names:
        site.start_manager(name, *(["--http", f"127.0.0.1:{http[name]}"] if http else []))
    for name in names:
        wait_for(
            lambda name=name: "manager ready" in site.output(f"manager-{name}"),  # type: ignore[misc]
            30,
            f"replica {name} to start",
        )


def rebuilt(site: Site, tmp_path: Path) -> dict[str, list[tuple[object, ...]]]:
    return site.rebuild(tmp_path / f"rebuilt-{time.monotonic_ns()}.db")


def test_two_replicas_each_receive_every_event(
    site: Site, nats_server: RunningServer, tmp_path: Path
) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="tick", interval=0.01))
    start_replicas(site, "a", "b")
    site.start_worker(config, key="worker")
    runs_file = site.workdir("w1", "tick") / "runs"
    wait_for(lambda: count_lines(runs_file) >= 4, 30, "tick to run four times")
    assert site.stop("worker") == 0
    last = last_sequence(nats_server)

    with views(site, "a", "b") as v:
        for name in ("a", "b"):
            wait_for(lambda n=name: v[n].position() == last, 30, f"view {name} at {last}")  # type: ignore[misc]
            assert delivered(nats_server, name) == last  # its own consumer, every event
        runs = v["a"].history("w1", "tick", limit=1000)
        assert len(runs) == count_lines(runs_file)  # none lost to the other replica
        assert v["a"].dump() == v["b"].dump() == rebuilt(site, tmp_path)
    # Two files, one per replica.
    assert site.instance.view_path("a").exists() and site.instance.view_path("b").exists()


def test_a_live_name_is_refused_and_a_killed_one_is_not(site: Site) -> None:
    first = site.start_manager("a")
    wait_for(lambda: "manager ready" in site.output("manager-a"), 30, "replica a")

    second = site.cli("manager", "--state-dir", str(site.root), "--name", "a")
    assert second.returncode == 1
    assert second.stderr.startswith("mirrorbus manager: error: manager name 'a' is in use: ")
    assert f"(pid {first.pid}, since " in second.stderr
    assert "give this manager another name" in second.stderr
    assert first.poll() is None  # the live one is untouched

    os.kill(first.pid, signal.SIGSTOP)  # hung: connected, not answering
    try:
        hung = site.cli("manager", "--state-dir", str(site.root), "--name", "a")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert hung.returncode == 1
    assert "manager name 'a' is in use: a process answering for it is connected" in hung.stderr

    bad = site.cli("manager", "--state-dir", str(site.root), "--name", "a.b")
    assert bad.returncode == 2
    assert "--name" in bad.stderr and "'a.b' is not allowed" in bad.stderr

    # SIGKILL: its connection dies with it, so the name is free again at once; the new
    # process goes on from the view's own position, not from the start of the log.
    with views(site, "a") as v:
        position = v["a"].position()
    site.kill("manager-a")
    site.start_manager("a")
    # (the same output file: the second process's "ready")
    wait_for(lambda: site.output("manager-a").count("manager ready") == 2, 30, "a again")
    assert f"projecting from sequence {position + 1}" in site.output("manager-a")


def test_a_replica_whose_consumer_is_taken_over_stops(
    site: Site, nats_server: RunningServer
) -> None:
    """A replica hung longer than the server waits loses its connection; another process may
    then take its name and make its consumer again.  Resumed, the old one must not pull from
    that consumer: it notices within seconds and stops.  (The takeover is done here by hand,
    as the new process would: the consumer deleted and made again.)"""
    proc = site.start_manager("a")
    wait_for(lambda: "manager ready" in site.output("manager-a"), 30, "replica a")

    async def take_over() -> None:
        nc = await connect(nats_server, "manager")
        try:
            js = nc.jetstream()
            name = S.manager_consumer("a")
            await js.delete_consumer(S.evt_stream, name)
            await js.add_consumer(
                S.evt_stream,
                ConsumerConfig(
                    durable_name=name,
                    name=name,
                    filter_subject=S.all_events,
                    ack_policy=AckPolicy.NONE,
                ),
            )
        finally:
            await nc.close()

    anyio.run(take_over)
    code = proc.wait(30)
    assert code == 1
    assert (
        f"manager name 'a' is in use: its consumer {S.manager_consumer('a')} was made again "
        "by another manager" in site.output("manager-a")
    )


def test_two_replicas_on_one_view_are_refused(site: Site, tmp_path: Path) -> None:
    """Names differ but the view is the same (a manager.toml copied to a second host, say):
    the second replica is refused instead of applying every event a second time."""
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    site.start_manager("a", "--db", shared)
    wait_for(lambda: "manager ready" in site.output("manager-a"), 30, "replica a")
    second = site.cli("manager", "--state-dir", str(site.root), "--name", "b", "--db", shared)
    assert second.returncode == 1
    assert (
        f"the status view at {shared} belongs to manager replica 'a': give replica 'b' a view "
        "of its own" in second.stderr
    )


def test_replicas_on_postgresql_each_in_its_own_schema(
    site: Site, nats_server: RunningServer, tmp_path: Path
) -> None:
    """A schema per replica in one PostgreSQL database (``options=-csearch_path=...``); the
    same schema for a second replica is refused."""
    base = os.environ.get("MIRRORBUS_TEST_PG_URL")
    if not base:
        pytest.skip("MIRRORBUS_TEST_PG_URL not set")
    admin = create_engine(base)
    schemas = {name: f"mbreplica_{uuid.uuid4().hex[:10]}" for name in ("a", "b")}
    urls = {
        name: f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
        for name, schema in schemas.items()
    }
    try:
        with admin.begin() as conn:
            for schema in schemas.values():
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        config = site.worker_config("w1", COUNTING_JOB.format(name="tick", interval=0.01))
        for name in ("a", "b"):
            site.start_manager(name, "--db", urls[name])
            wait_for(
                lambda n=name: "manager ready" in site.output(f"manager-{n}"),  # type: ignore[misc]
                30,
                f"replica {name}",
            )
        refused = site.cli(
            "manager", "--state-dir", str(site.root), "--name", "c", "--db", urls["a"]
        )
        assert refused.returncode == 1
        assert "belongs to manager replica 'a'" in refused.stderr
        site.start_worker(config, key="worker")
        runs_file = site.workdir("w1", "tick") / "runs"
        wait_for(lambda: count_lines(runs_file) >= 3, 30, "tick to run three times")
        assert site.stop("worker") == 0
        last = last_sequence(nats_server)
        views_ = {n: StatusView(u) for n, u in urls.items()}
        try:
            for name, view in views_.items():
                wait_for(lambda v=view: v.position() == last, 30, f"view {name} at {last}")  # type: ignore[misc]
            assert views_["a"].dump() == views_["b"].dump() == rebuilt(site, tmp_path)
        finally:
            for view in views_.values():
                view.close()
    finally:
        site.close()  # the replicas end before their schemas go
        with admin.begin() as conn:
            for schema in schemas.values():
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_a_view_from_before_replicas_is_adopted_by_the_default_name(tmp_path: Path) -> None:
    """A state directory's ``manager.db`` (and its WAL) becomes the default replica's view."""
    instance = Instance(tmp_path)
    (tmp_path / "manager.db").write_bytes(b"db")
    (tmp_path / "manager.db-wal").write_bytes(b"wal")
    instance.adopt_legacy_view("myhost")
    assert instance.view_path("myhost").read_bytes() == b"db"
    assert (tmp_path / "manager-myhost.db-wal").read_bytes() == b"wal"
    assert not (tmp_path / "manager.db").exists()
    (tmp_path / "manager.db").write_bytes(b"other")
    instance.adopt_legacy_view("myhost")  # the replica's own view is never replaced
    assert instance.view_path("myhost").read_bytes() == b"db"


def test_a_worker_named_like_a_replica_cannot_touch_its_consumer(
    site: Site, nats_server: RunningServer
) -> None:
    """A worker's consumers are named by its token, a replica's start with '-' (no token
    does): a worker called ``manager-a`` is refused looking at or deleting replica a's
    consumer (with the name ``manager-a`` it was that worker's own to delete)."""
    nats_server.add_worker("manager-a")
    site.start_manager("a")
    wait_for(lambda: "manager ready" in site.output("manager-a"), 30, "replica a")
    consumer = S.manager_consumer("a")

    async def attack() -> tuple[list[str], int]:
        errors: list[Exception] = []
        nc = await connect(nats_server, "worker", "manager-a", errors=errors)
        refused = 0
        try:
            js = nc.jetstream(timeout=1.0)
            for request in (
                js.delete_consumer(S.evt_stream, consumer),
                js.consumer_info(S.evt_stream, consumer),
            ):
                try:
                    await request
                except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
                    refused += 1
            await nc.flush()
        finally:
            await nc.close()
        return permission_violations(errors), refused

    violations, refused = anyio.run(attack)
    assert refused == 2
    assert len(violations) == 2 and all(consumer in v for v in violations)
    assert site.procs["manager-a"].poll() is None  # its consumer is still its own


def _ctl_json(site: Site, *args: str) -> list[dict[str, object]]:
    out = site.ctl(*args, "--json")
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def test_start_then_list_shows_the_start_on_every_replica(site: Site) -> None:
    config = site.worker_config("w1", SLEEPING_JOB.format(name="slow", interval=600))
    start_replicas(site, "a", "b")
    site.start_worker(config, key="worker")
    with views(site, "a", "b") as v:
        wait_for(
            lambda: all(v[n].jobs("w1") and v[n].jobs("w1")[0].status == "syncing" for n in v),
            30,
            "slow to sync on both views",
        )
        stopped = site.ctl("stop", "-w", "w1", "slow")
        assert stopped.returncode == 0, stopped.stderr
        wait_for(
            lambda: all(v[n].jobs("w1")[0].status == "paused" for n in v),
            30,
            "slow paused on both views",
        )

    # Replica b is hung while the job starts, and resumes just as it is asked: it must not
    # answer from its view before the start is in it.
    b = site.procs["manager-b"]
    os.kill(b.pid, signal.SIGSTOP)
    try:
        started = site.ctl("start", "-w", "w1", "slow")
    finally:
        os.kill(b.pid, signal.SIGCONT)
    assert started.returncode == 0, started.stderr
    on_b = _ctl_json(site, "--replica", "b", "list", "-w", "w1")
    any_replica = _ctl_json(site, "list", "-w", "w1")
    on_a = _ctl_json(site, "--replica", "a", "list", "-w", "w1")
    assert [j["status"] for j in on_b + any_replica + on_a] == ["syncing"] * 3

    # A position past the end of the log (a note from an older log) is answered at once.
    far = site.ctl("--min-position", "999999999", "list", "-w", "w1", "--json")
    assert far.returncode == 0, far.stderr
    unknown = site.ctl("--replica", "nobody", "list")
    assert unknown.returncode == 1 and "nobody answers" in unknown.stderr


# -- the drill -----------------------------------------------------------------------------


def http_jobs(port: int, replica: str) -> set[str]:
    """The job names of a replica's tunasync ``GET /jobs`` (the answer names the replica)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/jobs", timeout=10) as r:
        assert r.headers["Mirrorbus-Replica"] == replica
        return {str(item["name"]) for item in json.loads(r.read())}


def http_page(port: int) -> bytes:
    """A replica's status page (``GET /``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
        assert r.status == 200
        return bytes(r.read())


class Prober:
    """``Control.jobs()`` (what ``ctl list`` asks) in a loop on its own thread and loop, every
    answer noted with its time, latency and replica; any failure noted too."""

    def __init__(self, site: Site, server: RunningServer) -> None:
        self.settings = settings_from_paths([server.url], site.root / "pki", "admin")
        self.samples: list[tuple[float, float, str]] = []  # (at, latency, replica)
        self.positions: list[tuple[str, int]] = []  # (replica, position) of each answer
        self.failures: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: anyio.run(self._run), daemon=True)

    async def _run(self) -> None:
        bus = await bus_connect(self.settings, reconnect=False)
        try:
            control = Control(bus)
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    await control.jobs(timeout=5.0)
                    replica, position = control.answered_by or ("?", 0)
                    self.samples.append((began - self.t0, time.monotonic() - began, replica))
                    self.positions.append((replica, position))
                except BusError as exc:
                    self.failures.append((began - self.t0, str(exc)))
                await anyio.sleep(0.1)
        finally:
            await bus.close()

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def report(self, marks: dict[int, list[str]]) -> str:
        per_second: dict[int, list[tuple[float, str]]] = defaultdict(list)
        for at, latency, replica in self.samples:
            per_second[int(at)].append((latency, replica))
        lines = ["second  calls  max ms  mean ms  answered by"]
        for second in sorted(per_second):
            got = per_second[second]
            lat = [x for x, _ in got]
            by = ",".join(sorted({r for _, r in got}))
            mark = f"  <- {', '.join(marks[second])}" if second in marks else ""
            lines.append(
                f"{second:6d}  {len(got):5d}  {max(lat) * 1000:6.0f}  "
                f"{sum(lat) / len(lat) * 1000:7.0f}  {by}{mark}"
            )
        return "\n".join(lines)


def test_a_replica_behind_leaves_the_queries_to_the_others(
    site: Site, nats_server: RunningServer
) -> None:
    """A replica that starts far behind the log (a new one, or one back after a long absence)
    takes no share of the queries while others answer, until it has caught up: no answer
    comes from an old view."""
    start_replicas(site, "a")
    history = generated_history("w1", random.Random(21))
    append_as_worker(nats_server, "w1", [(drill_subject(e), encode(e)) for e in history])
    last = last_sequence(nats_server)
    with views(site, "a") as v:
        wait_for(lambda: v["a"].position() == last, 120, f"replica a at {last}")
    with Prober(site, nats_server) as probe:
        site.start_manager("b")  # an empty view: every event to apply
        wait_for(lambda: any(r == "b" for r, _ in probe.positions), 120, "answers from b at last")
    from_b = [p for r, p in probe.positions if r == "b"]
    assert from_b and min(from_b) >= last
    assert probe.failures == []
    assert f"catching up to event {last} before taking queries" in site.output("manager-b")


STOPPED_FOR = 30.0
"""Seconds replica b stays SIGSTOPped: far beyond any hedge, and long enough for ~150
queries, a third of them handed to b."""


def test_drill_three_replicas_one_killed_one_hung(
    site: Site, nats_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jobs = COUNTING_JOB.format(name="tick", interval=0.01) + COUNTING_JOB.format(
        name="tock", interval=0.01
    )
    config = site.worker_config("w1", jobs)
    ports = {name: free_port() for name in ("a", "b", "c")}
    start_replicas(site, "a", "b", "c", http=ports)
    site.start_worker(config, key="worker")
    ticks = site.workdir("w1", "tick") / "runs"
    wait_for(lambda: count_lines(ticks) >= 2, 30, "tick to run")

    marks: dict[int, list[str]] = defaultdict(list)
    ctl_runs: list[subprocess.CompletedProcess[str]] = []
    pages: list[set[str]] = []  # the jobs of c's /jobs while b is hung
    status_pages: list[bytes] = []  # c's status page meanwhile
    b = site.procs["manager-b"]
    with Prober(site, nats_server) as probe:
        wait_for(lambda: len(probe.samples) >= 10, 30, "answers before the faults")
        marks[int(time.monotonic() - probe.t0)].append("SIGKILL a")
        site.kill("manager-a")
        marks[int(time.monotonic() - probe.t0)].append("SIGSTOP b")
        os.kill(b.pid, signal.SIGSTOP)
        try:
            stop_until = time.monotonic() + STOPPED_FOR
            while time.monotonic() < stop_until:  # the real ctl and c's HTTP meanwhile
                ctl_runs.append(site.ctl("list", "--all", timeout=30))
                pages.append(http_jobs(ports["c"], "c"))
                status_pages.append(http_page(ports["c"]))
        finally:
            resumed = time.monotonic() - probe.t0
            marks[int(resumed)].append("SIGCONT b")
            os.kill(b.pid, signal.SIGCONT)
        site.start_manager("a", "--http", f"127.0.0.1:{ports['a']}")  # from its own position
        restarted = time.monotonic() - probe.t0
        marks[int(restarted)].append("a restarted")
        # (the same output file: the second process's "ready")
        wait_for(lambda: site.output("manager-a").count("manager ready") == 2, 30, "a again")
        wait_for(
            lambda: {r for at, _, r in probe.samples if at > restarted} >= {"a", "b", "c"},
            60,
            "answers from all three after the faults",
        )
        pages.append(http_jobs(ports["a"], "a"))
        pages.append(http_jobs(ports["b"], "b"))
    with capsys.disabled():  # in the test command's output, not only with -s
        print("\nctl list (Control.jobs) per second during the drill:")
        print(probe.report(marks))

    assert probe.failures == []  # every call answered, though a third went to hung b
    assert {r for _, _, r in probe.samples} >= {"a", "b", "c"}
    assert ctl_runs and all(r.returncode == 0 and "tick" in r.stdout for r in ctl_runs), [
        r.stderr for r in ctl_runs
    ]
    assert pages and all(jobs == {"tick", "tock"} for jobs in pages)
    assert status_pages and all(b"<html" in page for page in status_pages)

    assert site.stop("worker") == 0
    last = last_sequence(nats_server)
    with views(site, "a", "b", "c") as v:
        for name in v:  # b caught up after SIGCONT, a after its restart
            wait_for(lambda n=name: v[n].position() == last, 60, f"view {name} at {last}")  # type: ignore[misc]
        expected = rebuilt(site, tmp_path)
        for name in v:
            assert v[name].dump() == expected, f"view {name} differs from a rebuild"
        assert len(v["b"].history("w1", "tick", limit=10_000)) == count_lines(ticks)
