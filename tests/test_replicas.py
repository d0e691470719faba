"""Manager replicas against a real nats-server and real processes (issue 21).

Each replica has a name, its own consumer on the event log and its own SQLite view; queries
go to whichever replica is alive.  Checked here as an operator would see it: the views (files),
``ctl`` output, the stream's consumers, and what a second manager with a live name prints.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from conftest import RunningServer, connect
from e2e import Site, count_lines, wait_for
from test_e2e_worker import COUNTING_JOB, SLEEPING_JOB

from mirrorbus.events import Subjects
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
    """The last stream sequence replica ``replica``'s own consumer delivered."""

    async def ask() -> int:
        nc = await connect(server, "admin")
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


def start_replicas(site: Site, *names: str) -> None:
    for name in names:
        site.start_manager(name)
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
    wait_for(lambda: "manager ready" in site.output("manager-a"), 30, "replica a again")
    assert f"projecting from sequence {position + 1}" in site.output("manager-a")


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
