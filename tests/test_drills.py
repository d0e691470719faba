"""Fault drills against real processes (issue 6): nothing is lost, nothing is doubled.

Each drill runs a real nats-server (mutual TLS), ``mirrorbus manager`` and, where it says so,
``mirrorbus worker`` as child processes, does something bad to them, and then counts exactly:
the stream's events against the view's position, runs against the runs generated or recorded,
garbage against dead letters.  Each ends with a promise of docs/design.md ("Projection
rules"): the view equals a rebuild from the log (``mirrorbus manager rebuild --into`` a fresh
SQLite file).

* the manager SIGKILLed in the middle of ingesting ~30,000 events, then restarted;
* a flood of garbage on a worker's own event subjects while that worker runs;
* nats-server stopped for 5 s and restarted while a worker syncs a short-interval job.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import RunningServer, connect
from e2e import Site, count_lines, wait_for
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from test_e2e_worker import COUNTING_JOB

from mirrorbus.errors import CodecError
from mirrorbus.events import (
    MAX_EVENT_BYTES,
    AttemptFailed,
    AttemptStarted,
    Event,
    JobConfigured,
    JobEvent,
    JobScheduled,
    RunStarted,
    RunSucceeded,
    Subjects,
    WorkerStarted,
    decode_event,
    encode,
    fold,
)

pytestmark = pytest.mark.e2e

S = Subjects()


# -- helpers ------------------------------------------------------------------------------------


def last_sequence(server: RunningServer) -> int:
    async def ask() -> int:
        nc = await connect(server, "admin")
        try:
            info = await nc.jetstream().stream_info(S.evt_stream)
            return int(info.state.last_seq)
        finally:
            await nc.close()

    return anyio.run(ask)


def stored_event_ids(server: RunningServer) -> list[str]:
    """The ``id`` of every decodable event in the stream, in order (read as the manager)."""

    async def read() -> list[str]:
        nc = await connect(server, "manager")
        js = nc.jetstream()
        try:
            last = int((await js.stream_info(S.evt_stream)).state.last_seq)
            sub = await js.pull_subscribe(
                S.all_events,
                stream=S.evt_stream,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.ALL,
                    ack_policy=AckPolicy.NONE,
                    inactive_threshold=30,
                    mem_storage=True,
                ),
            )
            ids: list[str] = []
            seq = 0
            while seq < last:
                for msg in await sub.fetch(500, timeout=5):
                    seq = int(msg.metadata.sequence.stream)
                    with contextlib.suppress(CodecError):
                        ids.append(decode_event(msg.data).id)
            await sub.unsubscribe()
            return ids
        finally:
            await nc.close()

    return anyio.run(read)


def append_as_worker(
    server: RunningServer, worker: str, messages: list[tuple[str, bytes]]
) -> list[int]:
    """Append ``(subject, data)`` messages in order with ``worker``'s certificate, each with a
    fresh ``Nats-Msg-Id``; return their stream sequences (every one acknowledged)."""

    async def append() -> list[int]:
        nc = await connect(server, "worker", worker)
        try:
            js = nc.jetstream(publish_async_max_pending=2000)
            futures = []
            for i, (subject, data) in enumerate(messages):
                headers = {"Nats-Msg-Id": f"drill-{worker}-{time.time_ns()}-{i}"}
                futures.append(await js.publish_async(subject, data, headers=headers))
            with anyio.fail_after(60):
                await js.publish_async_completed()
            return [int((await f).seq) for f in futures]
        finally:
            await nc.close()

    return anyio.run(append)


def assert_rebuild_equals(site: Site, tmp_path: Path) -> None:
    """``manager rebuild --into`` a fresh SQLite file gives the live view, row for row."""
    rebuilt = tmp_path / f"rebuilt-{time.monotonic_ns()}.db"
    assert site.rebuild(rebuilt) == site.view.dump()


# -- a. the manager killed in the middle of a large batch ----------------------------------------

JOBS = 200
RUNS_PER_JOB = 30


def generated_history(worker: str, rnd: random.Random) -> list[Event]:
    """A worker's realistic log: 200 jobs, 30 runs each (retries, failures), round-robin.

    Times are whole seconds, so the rows are exact (see ``assert_rebuild_equals``).
    """
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    n = 0

    def ids(job: str, seconds: int) -> dict[str, Any]:
        nonlocal n
        n += 1
        return {"id": f"g{n}", "at": t0 + timedelta(seconds=seconds), "worker": worker, "job": job}

    events: list[Event] = [WorkerStarted(id="start", at=t0, worker=worker, jobs=(), concurrent=8)]
    names = [f"job{i:03d}" for i in range(JOBS)]
    for i, job in enumerate(names):
        events.append(JobConfigured(**ids(job, i), upstream=f"rsync://up/{job}/", interval=600))
    for r in range(RUNS_PER_JOB):
        for i, job in enumerate(names):
            at = 1000 + r * 1000 + i
            run = f"{job}-run{r}"
            events.append(RunStarted(**ids(job, at), run_id=run))
            events.append(AttemptStarted(**ids(job, at + 1), run_id=run, attempt=1))
            roll = rnd.random()
            if roll < 0.15:  # a failed first attempt, then a retry
                events.append(
                    AttemptFailed(
                        **ids(job, at + 2),
                        run_id=run,
                        attempt=1,
                        error="exit status 23",
                        exit_code=23,
                        final=False,
                    )
                )
                events.append(AttemptStarted(**ids(job, at + 3), run_id=run, attempt=2))
            if roll < 0.9:
                size = f"{rnd.randint(1, 999)}G" if rnd.random() < 0.8 else ""
                events.append(RunSucceeded(**ids(job, at + 4), run_id=run, attempt=1, size=size))
            else:
                events.append(
                    AttemptFailed(**ids(job, at + 4), run_id=run, attempt=1, error="timeout")
                )
            events.append(
                JobScheduled(**ids(job, at + 5), next_at=t0 + timedelta(seconds=at + 600))
            )
    return events


def test_manager_killed_mid_batch_applies_every_event_once(
    site: Site, nats_server: RunningServer, tmp_path: Path
) -> None:
    # The manager creates the streams and an empty view, then stops.
    site.start_manager()
    wait_for(lambda: "manager ready" in site.output("manager"), what="the manager to start")
    assert site.stop("manager") == 0
    assert site.view.position() == 0

    history = generated_history("w1", random.Random(6))
    seqs = append_as_worker(nats_server, "w1", [(_subject(e), encode(e)) for e in history])
    last = last_sequence(nats_server)
    assert seqs == list(range(1, len(history) + 1)) and last == len(history)
    assert len(history) > 25_000

    # Start the manager on the backlog; SIGKILL it while it is part-way through.
    site.start_manager()
    wait_for(lambda: site.view.position() >= last // 2, 30, "the manager to apply half", 0.02)
    site.kill("manager")
    at_kill = site.view.position()
    assert 0 < at_kill < last, f"not killed part-way: position {at_kill} of {last}"

    site.start_manager()
    wait_for(lambda: site.view.position() == last, 60, f"the view to reach sequence {last}")
    view = site.view
    assert view.dead_letters() == []
    job_events = [e for e in history if isinstance(e, JobEvent)]
    runs = {(e.job, e.run_id) for e in job_events if isinstance(e, RunStarted)}
    assert len(runs) == JOBS * RUNS_PER_JOB
    stored_runs = [r for job in range(JOBS) for r in view.history("w1", f"job{job:03d}", 1000)]
    assert len(stored_runs) == JOBS * RUNS_PER_JOB  # every run once, none twice
    assert {(r.job, r.run_id) for r in stored_runs} == runs
    failed = {(e.job, e.run_id) for e in job_events if isinstance(e, AttemptFailed) and e.final}
    assert {(r.job, r.run_id) for r in stored_runs if r.result == "failed"} == failed
    assert all(r.result in ("success", "failed") for r in stored_runs)
    # Each job's row is exactly the fold of its events (none skipped, none applied twice).
    expected = fold(job_events)
    assert view.jobs("w1") == [expected[name] for name in sorted(expected)]
    assert site.procs["manager"].poll() is None

    assert_rebuild_equals(site, tmp_path)


def _subject(event: Event) -> str:
    if isinstance(event, JobEvent):
        return S.job_events(event.worker, event.job)
    return S.worker_events(event.worker)


# -- b. a flood of garbage on event subjects -----------------------------------------------------


def garbage(rnd: random.Random, round_: int) -> list[tuple[str, bytes, str]]:
    """One round of bad messages a worker certificate may publish on its own subjects:
    (subject, data, what it is)."""
    at = datetime.now(UTC)
    tick = S.job_events("w1", "tick")
    valid: dict[str, Any] = {
        "type": "job.succeeded",
        "v": 1,
        "id": f"bad-{round_}",
        "at": at.isoformat(),
        "worker": "w1",
        "job": "tick",
        "run_id": f"fake-{round_}",
        "attempt": 1,
    }
    out = [
        (tick, rnd.randbytes(rnd.randint(1, 300)), "random bytes"),
        (S.job_events("w1", "junk"), rnd.randbytes(64), "random bytes"),
        (tick, b"", "empty"),
        (tick, json.dumps({"type": "job.teleported", "v": 1, "id": "x"}).encode(), "unknown type"),
        (tick, json.dumps([1, 2, 3]).encode(), "not an object"),
        (tick, json.dumps({**valid, "pad": "x" * MAX_EVENT_BYTES}).encode(), "oversized"),
        (tick, json.dumps({**valid, "worker": "w2"}).encode(), "another worker"),
        (tick, json.dumps({**valid, "job": "other"}).encode(), "another job"),
        (S.worker_events("w1"), json.dumps(valid).encode(), "job event on the worker subject"),
        (tick, json.dumps({**valid, "at": at.replace(tzinfo=None).isoformat()}).encode(), "naive"),
        (tick, json.dumps({**valid, "exit_code": 2**63}).encode(), "exit code out of range"),
        (tick, json.dumps({**valid, "run_id": "r" * 100}).encode(), "run id too long"),
        (tick, json.dumps({**valid, "attempt": "one"}).encode(), "wrong type"),
    ]
    return out


def test_garbage_flood_goes_to_dead_letters_and_real_events_all_arrive(
    site: Site, nats_server: RunningServer, tmp_path: Path
) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="tick", interval=0.01))
    runs_file = site.workdir("w1", "tick") / "runs"
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "tick", lambda j: j.status == "success")

    rnd = random.Random(66)
    bad_seqs: dict[int, str] = {}
    for round_ in range(8):  # interleaved with the worker's own events over a few seconds
        batch = garbage(rnd, round_)
        seqs = append_as_worker(nats_server, "w1", [(s, d) for s, d, _ in batch])
        bad_seqs.update(zip(seqs, (what for _, _, what in batch), strict=True))
        time.sleep(0.5)
    wait_for(lambda: count_lines(runs_file) >= 6, 30, "a few more runs of tick")
    assert site.stop("worker") == 0  # settle: every run closed and its events stored
    last = last_sequence(nats_server)
    wait_for(lambda: site.view.position() == last, 30, f"the view to reach sequence {last}")
    assert site.procs["manager"].poll() is None  # the manager kept going

    # Every garbage message is a dead letter with its sequence and a reason; nothing else is.
    dead = site.view.dead_letters(limit=10_000)
    assert len(bad_seqs) == 8 * 13
    assert [seq for seq, _, _ in dead] == sorted(bad_seqs)
    assert all(reason.strip() for _, _, reason in dead)
    reasons = {bad_seqs[seq]: reason for seq, _, reason in dead}
    assert "foreign subject" in reasons["another worker"]
    assert "foreign subject" in reasons["another job"]
    assert "byte limit" in reasons["oversized"]
    assert "unknown message type" in reasons["unknown type"]

    # Every real run reached the view, once; none of the fake ones did.
    total = count_lines(runs_file)
    runs = site.runs("w1", "tick")
    assert len(runs) == total
    assert len({r.run_id for r in runs}) == total
    assert not any(r.run_id.startswith("fake-") for r in runs)

    listed = site.cli("manager", "dead-letters", "--state-dir", str(site.root), "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [int(line.split("\t")[0]) for line in lines] == sorted(bad_seqs)
    assert all(len(line.split("\t")) == 3 and line.split("\t")[2] for line in lines)

    assert_rebuild_equals(site, tmp_path)


# -- c. nats-server stopped and restarted under a syncing worker ---------------------------------


def test_server_outage_loses_and_doubles_nothing(
    site: Site, nats_server: RunningServer, tmp_path: Path
) -> None:
    config = site.worker_config("w1", COUNTING_JOB.format(name="tick", interval=0.01))
    runs_file = site.workdir("w1", "tick") / "runs"
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "tick", lambda j: j.status == "success")
    wait_for(lambda: count_lines(runs_file) >= 2, 20, "tick to run twice")

    nats_server.server.stop()
    before = count_lines(runs_file)
    time.sleep(5)
    during = count_lines(runs_file) - before
    assert during >= 3, f"the worker kept its schedule: only {during} runs in 5 s"
    nats_server.server.start()

    # Both reconnect by themselves: new runs reach the view with no restart by us.
    after = count_lines(runs_file)
    wait_for(
        lambda: len(site.runs("w1", "tick")) >= after + 2, 40, "runs after the outage in the view"
    )
    assert site.stop("worker") == 0
    last = last_sequence(nats_server)
    wait_for(lambda: site.view.position() == last, 30, f"the view to reach sequence {last}")
    assert site.procs["manager"].poll() is None

    total = count_lines(runs_file)
    runs = site.runs("w1", "tick")
    assert len(runs) == total  # none lost
    assert len({r.run_id for r in runs}) == total  # none doubled
    assert site.view.dead_letters() == []
    # Appends retried across the outage were stored once: no event id twice in the log.
    ids = stored_event_ids(nats_server)
    assert len(ids) == last and len(set(ids)) == last
    assert_rebuild_equals(site, tmp_path)
