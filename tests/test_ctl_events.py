"""``ctl events``: the raw event log, from a sequence, a time or an age, for tools.

Against a real site: the lines and JSON objects are the stream's messages in order, ``-w``
keeps one worker's, ``--since`` starts where it says, an undecodable message (published by a
worker on its own subject) is shown with its reason, ``--follow`` follows, and a reader
certificate is enough.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from e2e import PYTHON, Site, wait_for

from mirrorbus.bus import connect
from mirrorbus.cli.ctl.live import LogEntry, parse_since
from mirrorbus.cli.ctl.watch import event_json, event_line
from mirrorbus.errors import ConfigError
from mirrorbus.events import JobPaused

JOB = """
[[mirrors]]
name = "{name}"
provider = "command"
upstream = "https://example.org/{name}/"
command = '''/bin/sh -c 'echo "Total size is 1.5K"' '''
size_pattern = "Total size is ([0-9\\\\.]+[KMGTP]?)"
"""

NOW = datetime(2026, 11, 28, 15, 4, 5, tzinfo=UTC)


def test_since_is_a_sequence_a_time_or_an_age() -> None:
    assert parse_since("1234", NOW) == 1234
    assert parse_since("10m", NOW) == NOW - timedelta(minutes=10)
    assert parse_since("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_since("1d", NOW) == NOW - timedelta(days=1)
    assert parse_since("90s", NOW) == NOW - timedelta(seconds=90)
    assert parse_since("2026-11-28T15:04:05Z", NOW) == NOW
    assert parse_since("2026-11-28T16:04:05+01:00", NOW) == NOW
    naive = parse_since("2026-11-28 15:04:05", NOW)
    assert isinstance(naive, datetime) and naive.tzinfo is UTC  # local time, made UTC
    for bad in ("yesterday", "10 parsecs", "-5", ""):
        with pytest.raises(ConfigError, match="key '--since': cannot read"):
            parse_since(bad, NOW)


def test_lines_and_json_of_an_event_and_of_garbage() -> None:
    event = JobPaused(id="e1", at=NOW, worker="w1", job="debian", cmd_id="c1")
    entry = LogEntry(seq=7, subject="mirrorbus.evt.w1.debian", time=NOW, event=event)
    assert event_line(entry) == (
        "7 2026-11-28T15:04:05Z mirrorbus.evt.w1.debian job.paused cmd_id=c1"
    )
    late = LogEntry(7, "mirrorbus.evt.w1.debian", NOW + timedelta(minutes=5), event)
    assert event_line(late).endswith("job.paused at=2026-11-28T15:04:05Z cmd_id=c1")
    obj = json.loads(event_json(entry))
    assert obj == {
        "seq": 7,
        "subject": "mirrorbus.evt.w1.debian",
        "time": "2026-11-28T15:04:05Z",
        "event": {
            "type": "job.paused",
            "id": "e1",
            "at": "2026-11-28T15:04:05Z",
            "v": 1,
            "worker": "w1",
            "job": "debian",
            "cmd_id": "c1",
        },
    }
    junk = LogEntry(8, "mirrorbus.evt.w1.x", NOW, None, "not a JSON object: boom", b"\xffzz")
    assert event_line(junk) == (
        '8 2026-11-28T15:04:05Z mirrorbus.evt.w1.x undecodable reason="not a JSON object: boom"'
    )
    assert json.loads(event_json(junk))["data"] == "\ufffdzz"


def seqs(stdout: str) -> list[int]:
    return [int(line.split(" ", 1)[0]) for line in stdout.splitlines()]


def events(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    result = site.ctl("events", *args, timeout=30)
    assert result.returncode == 0, result.stderr
    return result


async def publish_garbage(site: Site, data: bytes) -> int:
    """Append ``data`` as worker w1 on its own subject: allowed, and not an event."""
    bus = await connect(site.instance.bus_settings("worker", "w1"), reconnect=False)
    try:
        return await bus.append("mirrorbus.evt.w1.alpha", data, f"garbage-{time.time_ns()}")
    finally:
        await bus.close()


def test_events_end_to_end(site: Site) -> None:
    site.start_manager()
    site.start_worker(site.worker_config("w1", JOB.format(name="alpha")))
    site.wait_job("w1", "alpha", lambda j: j.status == "success")
    time.sleep(1.2)  # so that w2's events are stored a clear second after w1's
    site.start_worker(site.worker_config("w2", JOB.format(name="beta")))
    site.wait_job("w2", "beta", lambda j: j.status == "success")

    def w2_done() -> bool:  # the last event of w2: beta's next time, after its success
        kinds = [line.split(" ")[3] for line in events(site, "-w", "w2").stdout.splitlines()]
        return kinds[-1:] == ["job.scheduled"] and "job.succeeded" in kinds

    wait_for(w2_done, 30, "w2's JobScheduled after beta's success")

    # The whole log, in order, SEQ TIME SUBJECT TYPE fields.
    everything = events(site).stdout
    numbers = seqs(everything)
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 12
    for line in everything.splitlines():
        _, stamp, subject, kind = line.split(" ")[:4]
        assert stamp.endswith("Z") and datetime.fromisoformat(stamp)
        assert subject.startswith(("mirrorbus.evt.w1", "mirrorbus.evt.w2"))
        assert "." in kind
    assert " mirrorbus.evt.w1 worker.started " in everything
    assert " mirrorbus.evt.w1.alpha job.succeeded " in everything and "size=1.5K" in everything

    # From a sequence; --count bounds it.
    assert seqs(events(site, "--since", "3").stdout) == numbers[2:]
    assert seqs(events(site, "--since", "3", "--count", "2").stdout) == [3, 4]
    assert events(site, "--since", str(numbers[-1] + 1)).stdout == ""

    # -w: one worker's events, filtered by the server.
    only_w2 = events(site, "-w", "w2").stdout
    assert only_w2 and all(
        line.split(" ")[2].startswith("mirrorbus.evt.w2") for line in only_w2.splitlines()
    )
    both = events(site, "-w", "w1", "-w", "w2").stdout
    assert seqs(both) == numbers

    # --json: one object per line, the decoded event in it.
    objects = [json.loads(line) for line in events(site, "--json").stdout.splitlines()]
    assert [o["seq"] for o in objects] == numbers
    assert all(set(o) == {"seq", "subject", "time", "event"} for o in objects)
    assert all(o["event"]["type"] and o["subject"].startswith("mirrorbus.evt.") for o in objects)
    succeeded = next(o for o in objects if o["event"]["type"] == "job.succeeded")
    assert succeeded["event"]["job"] == "alpha" and succeeded["event"]["size"] == "1.5K"

    # From a time: the first event of w2, a second after every event of w1.
    first_w2 = next(o for o in objects if o["subject"].startswith("mirrorbus.evt.w2"))
    from_time = events(site, "--since", first_w2["time"]).stdout
    assert seqs(from_time)[0] == first_w2["seq"]
    assert seqs(events(site, "--since", "1h").stdout) == numbers
    time.sleep(1.1)
    assert events(site, "--since", "1s").stdout == ""

    # An undecodable message is shown with its reason, and the log goes on after it.
    bad_seq = anyio.run(publish_garbage, site, b"\xffnot json at all")
    shown = events(site, "--since", str(bad_seq)).stdout.splitlines()
    assert shown[0].startswith(f"{bad_seq} ")
    assert " mirrorbus.evt.w1.alpha undecodable reason=" in shown[0]
    assert "not a JSON object" in shown[0]
    garbage = json.loads(events(site, "--since", str(bad_seq), "--json").stdout.splitlines()[0])
    assert garbage["event"] is None and "not a JSON object" in garbage["error"]
    assert garbage["data"].endswith("not json at all")
    bad_type = anyio.run(publish_garbage, site, b'{"type": "job.exploded", "id": "x"}')
    assert "unknown message type 'job.exploded'" in events(site, "--since", str(bad_type)).stdout

    # --follow: what happens next, until --count.
    since = str(bad_type + 1)
    argv = ["events", "--follow", "--since", since, "--count", "3", "--timeout", "60"]
    follow = subprocess.Popen(
        [*PYTHON, "ctl", "--state-dir", str(site.root), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)
        assert follow.poll() is None  # nothing new yet: it waits
        assert site.ctl("start", "-w", "w1", "alpha").returncode == 0
        out, err = follow.communicate(timeout=30)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, err
    assert seqs(out) == [bad_type + 1, bad_type + 2, bad_type + 3]
    assert "job.run-started" in out and "reason=start" in out

    # --timeout ends a quiet follow cleanly.
    started = time.monotonic()
    assert events(site, "--follow", "--since", "999999", "--timeout", "1").stdout == ""
    assert time.monotonic() - started < 15

    # A reader certificate is enough.
    as_reader = site.ctl("-c", str(site.ctl_config("reader")), "events", "--count", "3", "--json")
    assert as_reader.returncode == 0, as_reader.stderr
    assert [json.loads(line)["seq"] for line in as_reader.stdout.splitlines()] == [1, 2, 3]

    # A --since that means nothing: one line, exit 2.
    wrong = site.ctl("events", "--since", "last tuesday")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert wrong.stderr.startswith("mirrorbus ctl events: error: key '--since': cannot read")
