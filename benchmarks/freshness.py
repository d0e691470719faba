"""Scenario ``freshness``: from a job process's exit to the view showing the run's end.

A real ``mirrorbus up`` runs 10 command jobs on a short interval; each job's last act is to
append the time (``date +%s%N``, the wall clock) to a file in its working directory, and exit.
The benchmark polls the manager's view (its SQLite file, read-only, every 2 ms) and notes when
each job's ``last_ended`` changes; the run's end is the latest time written by the job before
that moment.  Everything in between is what a user waits for: the worker reaping the process,
the post hooks, the durable outbox, the acknowledged append, the manager reading and applying.

The baseline is the minimal event-sourced path in the same run, on a nats-server of its own
with the same TLS: one JetStream publish (acknowledged), a pull consumer receiving it, one
SQLite row committed, timed from before the publish until a reader polling the database the
same way (every 2 ms) sees the row.
"""

from __future__ import annotations

import contextlib
import sqlite3
import ssl
import time
from pathlib import Path

import anyio
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from benchmarks.ctl import up
from benchmarks.harness import Row, judged, percentile
from mirrorbus.host import pki
from mirrorbus.host.server import NatsServer, find_nats_server, free_port

JOBS = 10
INTERVAL_MIN = 0.04  # 2.4 s between a job's runs
WARMUP = 2
"""Runs of each job not counted (the first start of every job at once, caches)."""

PAYLOAD = b'{"type":"job.succeeded"}' * 8
"""About the size of a run's end event."""

COMMAND = """/bin/sh -c 'date +%s%N >> "$TUNASYNC_WORKING_DIR/ends"' """


def _config(root: Path) -> Path:
    path = root / "fresh.toml"
    lines = [
        "[global]",
        'name = "fresh"',
        f'mirror_dir = "{root}/mirrors"',
        f'log_dir = "{root}/logs/{{{{.Name}}}}"',
        f"concurrent = {JOBS}",
        "retry = 1",
        "",
    ]
    for j in range(JOBS):
        # Intervals a little apart, so that the runs drift apart instead of all ending at
        # the same moment (a user waits for one run, not for a crowd).
        lines += [
            "[[mirrors]]",
            f'name = "f{j}"',
            'provider = "command"',
            f"interval = {INTERVAL_MIN + j * 0.003:.3f}",
            f"command = '''{COMMAND}'''",
        ]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def _ends(root: Path, job: str) -> list[int]:
    try:
        text = (root / "mirrors" / job / "ends").read_text()
    except OSError:
        return []
    return [int(line) for line in text.split() if line.isdigit()]


def _view_file(state: Path) -> Path:
    found = sorted(state.glob("manager-*.db")) or sorted(state.glob("manager.db"))
    if not found:
        raise RuntimeError(f"no view file in {state}")
    return found[0]


def measure(root: Path, runs: int) -> list[float]:
    """Latencies in ms, exit -> view, of ``runs`` runs (after the warm-up)."""
    config = _config(root)
    latencies: list[float] = []
    with up(root, config=config) as (_, state, _env):
        deadline = time.monotonic() + 120
        view: Path | None = None
        while view is None:
            with contextlib.suppress(RuntimeError):
                view = _view_file(state)
            if time.monotonic() > deadline:
                raise RuntimeError("the manager made no view")
            time.sleep(0.1)
        db = sqlite3.connect(f"file:{view}?mode=ro", uri=True, isolation_level=None)
        try:
            seen: dict[str, int | None] = {}
            counted: dict[str, int] = {}
            used: dict[str, set[int]] = {}
            deadline = time.monotonic() + max(180.0, runs * INTERVAL_MIN * 60 / JOBS * 4)
            while len(latencies) < runs:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"only {len(latencies)} of {runs} runs seen in time")
                try:
                    rows = db.execute(
                        "SELECT name, last_ended FROM jobs WHERE worker = 'fresh'"
                    ).fetchall()
                except sqlite3.OperationalError:
                    rows = []  # the table is not there yet
                now = time.time_ns()
                for name, ended in rows:
                    if ended is None or seen.get(name) == ended:
                        continue
                    seen[name] = ended
                    counted[name] = counted.get(name, 0) + 1
                    if counted[name] <= WARMUP:
                        continue
                    done = [t for t in _ends(root, name) if t <= now]
                    fresh = [t for t in done if t not in used.setdefault(name, set())]
                    if fresh:
                        last = max(fresh)
                        used[name].update(done)
                        latencies.append((now - last) / 1e6)
                time.sleep(0.002)
        finally:
            db.close()
    return latencies[:runs]


def _poll_until(reader: sqlite3.Connection, seq: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not reader.execute("SELECT 1 FROM runs WHERE seq = ?", (seq,)).fetchone():
        if time.monotonic() > deadline:
            raise RuntimeError(f"row {seq} not seen in {timeout:g} s")
        time.sleep(0.002)


async def minimal_path(root: Path, pki_dir: Path, count: int) -> list[float]:
    """Latencies in ms of publish -> pull consumer -> one SQLite row committed."""
    port = free_port()
    conf = root / "minimal.conf"
    conf.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{root / "minimal-js"}" }}\n'
        "tls {\n"
        f'  cert_file: "{pki_dir / "server.crt"}"\n'
        f'  key_file: "{pki_dir / "server.key"}"\n'
        f'  ca_file: "{pki_dir / "ca.crt"}"\n'
        "  verify: true\n"
        "}\n"
    )
    server = NatsServer(
        find_nats_server(), conf, host="127.0.0.1", port=port, log_file=root / "minimal.log"
    )
    server.start()
    db = sqlite3.connect(root / "minimal.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE runs (seq INTEGER PRIMARY KEY, data BLOB)")
    try:
        ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(pki_dir / "manager.crt"), str(pki_dir / "manager.key"))
        nc = await nats.connect(f"tls://127.0.0.1:{port}", tls=ctx)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="MINIMAL", subjects=["minimal.>"]))
            sub = await js.pull_subscribe(
                "minimal.>",
                stream="MINIMAL",
                config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.NONE),
            )
            latencies: list[float] = []
            # Seen the way the job's run is seen: a reader polling the database every 2 ms
            # (a connection and a thread of its own) until the row is there.
            reader = sqlite3.connect(
                f"file:{root / 'minimal.db'}?mode=ro",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                for i in range(count):
                    started = time.perf_counter()
                    seq = 0
                    async with anyio.create_task_group() as tg:

                        async def receive() -> None:
                            msgs = await sub.fetch(1, timeout=5)
                            for m in msgs:
                                db.execute(
                                    "INSERT INTO runs VALUES (?, ?)",
                                    (m.metadata.sequence.stream, m.data),
                                )
                            db.commit()

                        tg.start_soon(receive)
                        ack = await js.publish(f"minimal.w.j{i % JOBS}", PAYLOAD)
                        seq = int(ack.seq)
                        await anyio.to_thread.run_sync(_poll_until, reader, seq)
                    latencies.append((time.perf_counter() - started) * 1000)
                    await anyio.sleep(0.01)
            finally:
                reader.close()
            return latencies
        finally:
            await nc.close()
    finally:
        db.close()
        server.stop()


async def freshness(root: Path, runs: int) -> list[Row]:
    pki_dir = root / "pki"
    pki.ensure_pki(pki_dir, pki.DEFAULT_HOSTS, [])
    path = await anyio.to_thread.run_sync(measure, root, runs)
    base = await minimal_path(root, pki_dir, max(200, runs))
    note = (
        f"{len(path)} runs of {JOBS} jobs, view polled every 2 ms; baseline: JetStream "
        "publish -> pull consumer -> one SQLite row committed, same TLS"
    )
    return [
        judged(
            Row(
                "9 freshness",
                "job exit -> view, p50",
                percentile(path, 50),
                percentile(base, 50),
                "ms",
                target="≤ 3× minimal path",
                note=note,
                higher_is_better=False,
            ),
            at_most=3.0,
        ),
        judged(
            Row(
                "9 freshness",
                "job exit -> view, p99",
                percentile(path, 99),
                percentile(base, 99),
                "ms",
                target="≤ 5× minimal path",
                note=note,
                higher_is_better=False,
            ),
            at_most=5.0,
        ),
    ]
