"""The manager's HTTP read side and status files against tunasync's formats, end to end.

A real nats-server, a real ``mirrorbus manager --http`` process (local time zone +0800), and
events appended with the workers' own certificates, with fixed times, so that every job is in
a known status.  ``/jobs`` is compared byte for byte with what tunasync's gin server writes
(docs/tunasync.md §2.4: 13 fields in order, Go's text time layout, ``_ts`` seconds, zero times,
``"unknown"`` size, HTML-escaped ``&<>``); ``/metrics`` is read with prometheus-client's own
parser; the files the manager writes are checked against ``/jobs`` and mirrorz v1.7.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from e2e import PYTHON, Site, wait_for
from prometheus_client.parser import text_string_to_metric_families

from mirrorbus.bus import connect
from mirrorbus.events import (
    AttemptFailed,
    AttemptStarted,
    Event,
    JobConfigured,
    JobDisabled,
    JobPaused,
    JobScheduled,
    RunStarted,
    RunSucceeded,
    Subjects,
    WorkerStarted,
    WorkerStopped,
    encode,
)
from mirrorbus.host.server import free_port

T_START = datetime(2024, 1, 2, 3, 0, 0, tzinfo=UTC)  # 2024-01-02 11:00:00 +0800, 1704164400
T_END = datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)  # 11:04:05 +0800, 1704164645(.5)
T_NEXT = datetime(2024, 1, 2, 4, 4, 5, tzinfo=UTC)  # 12:04:05 +0800, 1704168245
T_BOOT = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)  # 2024-01-01 08:00:00 +0800
ZERO = '"0001-01-01 00:00:00 +0000"'
ZERO_TS = "-62135596800"
UPSTREAM = "https://example.org/d?x=1&y=<2>"


def _events() -> list[Event]:
    """One job in each of tunasync's seven statuses (g-off on worker w2, a slave)."""
    n = iter(range(1, 1000))

    def e(cls: Any, worker: str = "w1", **kw: Any) -> Any:
        return cls(id=f"e{next(n)}", worker=worker, **kw)

    ev: list[Any] = [e(WorkerStarted, at=T_BOOT, version="t", hostname="h", pid=1, jobs=("x",))]
    for job in ("a-none", "b-pre", "c-sync", "d-ok", "e-bad", "f-paused"):
        up = UPSTREAM if job == "d-ok" else f"rsync://example.org/{job}/"
        about = {"desc": "D & <OK>", "help": "/help/d-ok"} if job == "d-ok" else {}
        ev.append(e(JobConfigured, at=T_BOOT, job=job, upstream=up, interval=3600, **about))
    ev.append(e(JobScheduled, at=T_BOOT, job="a-none", next_at=T_NEXT))
    ev.append(e(RunStarted, at=T_START, job="b-pre", run_id="r1"))
    ev += [
        e(RunStarted, at=T_START, job="c-sync", run_id="r1"),
        e(AttemptStarted, at=T_START, job="c-sync", run_id="r1", attempt=1),
    ]
    ev += [
        e(RunStarted, at=T_START, job="d-ok", run_id="r1"),
        e(AttemptStarted, at=T_START, job="d-ok", run_id="r1", attempt=1),
        e(RunSucceeded, at=T_END, job="d-ok", run_id="r1", attempt=1, size="1.5G"),
        e(JobScheduled, at=T_END, job="d-ok", next_at=T_NEXT),
    ]
    ev += [
        e(RunStarted, at=T_START, job="e-bad", run_id="r1"),
        e(AttemptStarted, at=T_START, job="e-bad", run_id="r1", attempt=1),
        e(AttemptFailed, at=T_END, job="e-bad", run_id="r1", attempt=1, error="x", exit_code=3),
    ]
    ev += [
        e(RunStarted, at=T_START, job="f-paused", run_id="r1"),
        e(AttemptFailed, at=T_END, job="f-paused", run_id="r1", attempt=1, error="killed"),
        e(JobPaused, at=T_END, job="f-paused"),
    ]
    ev += [
        e(JobConfigured, "w2", at=T_BOOT, job="g-off", upstream="u", is_master=False),
        e(JobDisabled, "w2", at=T_BOOT, job="g-off"),
        e(WorkerStopped, "w2", at=T_END),
    ]
    return ev


async def append_events(site: Site, events: list[Event]) -> None:
    """Append as the workers themselves (each with its own certificate)."""
    s = Subjects()
    for worker in ("w1", "w2"):
        bus = await connect(site.instance.bus_settings("worker", worker), reconnect=False)
        try:
            for ev in events:
                if ev.worker != worker:
                    continue
                job = getattr(ev, "job", None)
                subject = s.job_events(worker, job) if job else s.worker_events(worker)
                await bus.append(subject, encode(ev), ev.id)
        finally:
            await bus.close()


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def _ping(base: str) -> bool:
    try:
        return get(base + "/ping")[0] == 200
    except OSError:
        return False


class Running:
    def __init__(self, site: Site, base: str, files: Path) -> None:
        self.site, self.base, self.files = site, base, files


@pytest.fixture
def running(nats_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:  # type: ignore[no-untyped-def]
    site = Site.create(tmp_path / "site", nats_server.pki_dir, nats_server.port)
    port = free_port()
    files = tmp_path / "www"
    config = site.root / "manager.toml"
    config.write_text(
        f'[database]\nurl = "{site.db_url}"\n\n'
        f'[files]\njobs_json = "{files}/tunasync.json"\nmirrorz_json = "{files}/mirrorz.json"\n\n'
        '[mirrorz.site]\nurl = "https://mirrors.example.org"\nabbr = "EX"\nname = "Example"\n'
    )
    monkeypatch.setenv("TZ", "Asia/Shanghai")  # text times in +0800, as a manager in China
    argv = [*PYTHON, "manager", "-c", str(config), "--state-dir", str(site.root)]
    site._spawn(
        "manager",
        [*argv, "-v", "--http", f"127.0.0.1:{port}"],
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ping(base), 20, "the manager's HTTP server")
        anyio.run(append_events, site, _events())
        yield Running(site, base, files)
    finally:
        site.close()


def _web(
    name: str,
    status: str,
    update: tuple[str, str] = (ZERO, ZERO_TS),
    started: tuple[str, str] = (ZERO, ZERO_TS),
    ended: tuple[str, str] = (ZERO, ZERO_TS),
    next_: tuple[str, str] = (ZERO, ZERO_TS),
    upstream: str = "",
    size: str = "unknown",
    master: str = "true",
) -> str:
    """One WebMirrorStatus exactly as Go's json.Marshal writes it (written out by hand)."""
    return (
        f'{{"name":"{name}","is_master":{master},"status":"{status}",'
        f'"last_update":{update[0]},"last_update_ts":{update[1]},'
        f'"last_started":{started[0]},"last_started_ts":{started[1]},'
        f'"last_ended":{ended[0]},"last_ended_ts":{ended[1]},'
        f'"next_schedule":{next_[0]},"next_schedule_ts":{next_[1]},'
        f'"upstream":"{upstream}","size":"{size}"}}'
    )


START = ('"2024-01-02 11:00:00 +0800"', "1704164400")
END = ('"2024-01-02 11:04:05 +0800"', "1704164645")
NEXT = ('"2024-01-02 12:04:05 +0800"', "1704168245")

EXPECTED_JOBS = (
    "["
    + ",".join(
        [
            _web("a-none", "none", next_=NEXT, upstream="rsync://example.org/a-none/"),
            _web("b-pre", "pre-syncing", started=START, upstream="rsync://example.org/b-pre/"),
            _web("c-sync", "syncing", started=START, upstream="rsync://example.org/c-sync/"),
            _web(
                "d-ok",
                "success",
                update=END,
                started=START,
                ended=END,
                next_=NEXT,
                upstream="https://example.org/d?x=1\\u0026y=\\u003c2\\u003e",
                size="1.5G",
            ),
            _web(
                "e-bad", "failed", started=START, ended=END, upstream="rsync://example.org/e-bad/"
            ),
            _web(
                "f-paused",
                "paused",
                started=START,
                ended=END,
                upstream="rsync://example.org/f-paused/",
            ),
            _web("g-off", "disabled", upstream="u", master="false"),
        ]
    )
    + "]"
).encode()

WEB_FIELDS = [
    ("name", str),
    ("is_master", bool),
    ("status", str),
    ("last_update", str),
    ("last_update_ts", int),
    ("last_started", str),
    ("last_started_ts", int),
    ("last_ended", str),
    ("last_ended_ts", int),
    ("next_schedule", str),
    ("next_schedule_ts", int),
    ("upstream", str),
    ("size", str),
]
TEXT_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?(Z|[+-]\d\d:\d\d)$")


def _jobs_ready(base: str) -> bytes | None:
    status, _, body = get(base + "/jobs")
    return body if status == 200 and body.count(b'"name"') == 7 and b"disabled" in body else None


def test_jobs_is_tunasyncs_get_jobs_byte_for_byte(running: Running) -> None:
    body = wait_for(lambda: _jobs_ready(running.base), 20, "all seven jobs in /jobs")
    assert body == EXPECTED_JOBS

    # Field by field, the way tunasync-monitor's strict serde and mirror-web read it.
    _, headers, _ = get(running.base + "/jobs")
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    items = json.loads(body, object_pairs_hook=list)
    assert {dict(i)["status"] for i in items} == {
        "none",
        "pre-syncing",
        "syncing",
        "success",
        "failed",
        "paused",
        "disabled",
    }
    for pairs in items:
        assert [k for k, _ in pairs] == [k for k, _ in WEB_FIELDS]
        for (key, value), (_, kind) in zip(pairs, WEB_FIELDS, strict=True):
            assert type(value) is kind, (key, value)
            if key in ("last_update", "last_started", "last_ended", "next_schedule"):
                assert TEXT_TIME.match(value), value
                ts = dict(pairs)[f"{key}_ts"]
                parsed = datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z")
                if ts == -62135596800:
                    assert value == "0001-01-01 00:00:00 +0000"
                else:
                    assert int(parsed.timestamp()) == ts
                    assert parsed.utcoffset() == timedelta(hours=8)


def test_workers_worker_jobs_and_ping(running: Running) -> None:
    wait_for(lambda: _jobs_ready(running.base), 20, "all seven jobs in /jobs")
    status, headers, body = get(running.base + "/ping")
    assert (status, body) == (200, b'{"message":"pong"}')
    assert headers["Content-Type"] == "application/json; charset=utf-8"

    status, _, body = get(running.base + "/workers")
    assert status == 200
    workers = json.loads(body, object_pairs_hook=list)
    assert [[k for k, _ in w] for w in workers] == [
        ["id", "url", "token", "last_online", "last_register"]
    ] * 2
    w1, w2 = (dict(w) for w in workers)
    assert (w1["id"], w1["url"], w1["token"]) == ("w1", "", "REDACTED")
    assert w1["last_register"] == "2024-01-01T08:00:00+08:00"
    assert w1["last_online"] == "2024-01-02T11:04:05.5+08:00"  # RFC3339Nano: no trailing 0
    assert w2["last_register"] == "0001-01-01T00:00:00Z"  # never seen starting
    assert all(RFC3339.match(w[k]) for w in (w1, w2) for k in ("last_online", "last_register"))

    status, headers, body = get(running.base + "/workers/w1/jobs")
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "*"  # mirrorz reads it from browsers
    jobs = json.loads(body, object_pairs_hook=list)
    assert len(jobs) == 6
    assert [k for k, _ in jobs[0]] == [
        "name",
        "worker",
        "is_master",
        "status",
        "last_update",
        "last_started",
        "last_ended",
        "next_schedule",
        "upstream",
        "size",
        "error_msg",
    ]
    bad = next(dict(j) for j in jobs if dict(j)["name"] == "e-bad")
    assert (bad["worker"], bad["error_msg"], bad["last_update"]) == (
        "w1",
        "x",
        "0001-01-01T00:00:00Z",
    )
    assert bad["last_ended"] == "2024-01-02T11:04:05.5+08:00"

    status, _, body = get(running.base + "/workers/nobody/jobs")
    assert (status, body) == (400, b'{"error":"invalid workerID nobody"}')


def _sample(families: dict[str, Any], name: str, **labels: str) -> float:
    for family in families.values():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_parse_with_prometheus_client(running: Running) -> None:
    wait_for(lambda: _jobs_ready(running.base), 20, "all seven jobs in /jobs")
    status, headers, body = get(running.base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["mirrorbus_job_runs"].type == "counter"
    assert families["mirrorbus_job_status"].type == "gauge"

    ok = {"worker": "w1", "job": "d-ok"}
    assert _sample(families, "mirrorbus_job_status", **ok, status="success") == 1
    assert _sample(families, "mirrorbus_job_status", **ok, status="failed") == 0
    assert _sample(families, "mirrorbus_job_last_success_timestamp_seconds", **ok) == 1704164645.5
    assert _sample(families, "mirrorbus_job_last_run_duration_seconds", **ok) == 245.5
    assert _sample(families, "mirrorbus_job_size_bytes", **ok) == 1.5 * 1024**3
    assert _sample(families, "mirrorbus_job_last_exit_code", **ok) == 0
    assert _sample(families, "mirrorbus_job_runs_total", **ok) == 1
    assert _sample(families, "mirrorbus_job_failures_total", **ok) == 0
    bad = {"worker": "w1", "job": "e-bad"}
    assert _sample(families, "mirrorbus_job_last_exit_code", **bad) == 3
    assert _sample(families, "mirrorbus_job_failures_total", **bad) == 1
    assert _sample(families, "mirrorbus_job_status", worker="w2", job="g-off", status="disabled")
    assert _sample(families, "mirrorbus_worker_online", worker="w1") == 1
    assert _sample(families, "mirrorbus_worker_online", worker="w2") == 0
    assert _sample(families, "mirrorbus_worker_last_seen_timestamp_seconds", worker="w2") == (
        T_END.timestamp()
    )
    position = _sample(families, "mirrorbus_projection_position")
    assert position == len(_events())
    assert _sample(families, "mirrorbus_projection_lag_events") == 0
    # No size series for a size nobody knows.
    with pytest.raises(AssertionError):
        _sample(families, "mirrorbus_job_size_bytes", worker="w1", job="a-none")


def test_status_files_follow_the_view(running: Running) -> None:
    body = wait_for(lambda: _jobs_ready(running.base), 20, "all seven jobs in /jobs")
    tunasync = running.files / "tunasync.json"
    wait_for(lambda: tunasync.exists() and tunasync.read_bytes() == body, 10, "tunasync.json")
    mirrorz_file = running.files / "mirrorz.json"
    doc = wait_for(
        lambda: (
            mirrorz_file.exists()
            and len((d := json.loads(mirrorz_file.read_bytes()))["mirrors"]) == 7
            and d
        ),
        10,
        "mirrorz.json",
    )
    assert doc["version"] == 1.7
    assert doc["site"] == {"url": "https://mirrors.example.org", "abbr": "EX", "name": "Example"}
    assert doc["info"] == []
    status = {m["cname"]: m["status"] for m in doc["mirrors"]}
    assert status == {
        "a-none": "DX1704168245",
        "b-pre": "Y1704164400",
        "c-sync": "Y1704164400",
        "d-ok": "S1704164645X1704168245",
        "e-bad": "F1704164645",
        "f-paused": "P1704164645",
        "g-off": "U",
    }
    for m in doc["mirrors"]:
        assert list(m) == ["cname", "desc", "url", "status", "help", "upstream", "size", "disable"]
        assert re.fullmatch(r"([A-Z]\d*)+", m["status"])
    d_ok = next(m for m in doc["mirrors"] if m["cname"] == "d-ok")
    assert (d_ok["size"], d_ok["url"], d_ok["disable"]) == ("1.5G", "/d-ok", False)
    assert (d_ok["desc"], d_ok["help"]) == ("D & <OK>", "/help/d-ok")  # from the worker config
    assert next(m for m in doc["mirrors"] if m["cname"] == "g-off")["disable"] is True
