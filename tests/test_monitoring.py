"""``examples/monitoring/``: Prometheus alert rules, their unit tests and a Grafana dashboard,
over the series a real manager exports.

``promtool`` (Debian's ``prometheus`` package; ``scripts/test`` installs it) checks the rules
and the scrape config and runs the rules' unit tests.  A real manager and worker on a real
nats-server, with a job that succeeds, one that fails and an undecodable event, give the
``/metrics`` every metric name and label in the rules, their tests and the dashboard must be
found in.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from e2e import PYTHON, Site, wait_for
from prometheus_client.parser import text_string_to_metric_families

from mirrorbus.bus import connect
from mirrorbus.events import AttemptFailed, RunStarted, RunSucceeded, Subjects, encode
from mirrorbus.host.server import free_port
from projections.metrics import consecutive_failures
from projections.status_view import StatusView

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "examples" / "monitoring"
RULES = MONITORING / "mirrorbus-alerts.yml"
RULE_TESTS = MONITORING / "mirrorbus-alerts.test.yml"
DASHBOARD = MONITORING / "mirrorbus-dashboard.json"
METRIC = re.compile(r"\bmirrorbus_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed (Debian: apt install prometheus; scripts/test does it)"
        )
    return found


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args",
    [
        ("check", "rules", RULES.name),
        ("test", "rules", RULE_TESTS.name),
        ("check", "config", "prometheus.yml"),
    ],
    ids=["check rules", "test rules", "check config"],
)
def test_promtool_accepts_the_rules_and_their_tests_pass(args: tuple[str, ...]) -> None:
    result = subprocess.run(
        [promtool(), *args], cwd=MONITORING, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.e2e
def test_the_rule_tests_fail_when_a_rule_is_wrong(tmp_path: Path) -> None:
    """The unit tests can fail: with N = 4 instead of 3 the failing job's alert is missing."""
    for source in (RULES, RULE_TESTS):
        text = source.read_text()
        if source == RULES:
            assert text.count("mirrorbus_job_consecutive_failures >= 3") == 1
            text = text.replace("consecutive_failures >= 3", "consecutive_failures >= 4")
        (tmp_path / source.name).write_text(text)
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "MirrorbusJobFailedRepeatedly" in result.stdout + result.stderr


JOBS = """
[[mirrors]]
name = "good.one"
provider = "command"
upstream = "https://example.org/good/"
command = '''/bin/sh -c 'echo "Total size is 12K"' '''
size_pattern = "Total size is ([0-9\\\\.]+[KMGTP]?)"

[[mirrors]]
name = "bad"
provider = "command"
upstream = "https://example.org/bad/"
command = '''/bin/sh -c 'exit 3' '''
"""


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


async def _dead_letter(site: Site) -> None:
    bus = await connect(site.instance.bus_settings("worker", "w1"))
    try:
        subject = bus.subjects.job_events("w1", "bad")
        await bus.append(subject, b'{"type": "job.nonsense"}', f"junk-{datetime.now(UTC)}")
    finally:
        await bus.close()


@pytest.fixture
def exported(site: Site) -> Iterator[dict[str, set[str]]]:
    """Metric sample name -> label names, from a real manager's /metrics."""
    port = free_port()
    site._spawn(
        "manager",
        [*PYTHON, "manager", "--state-dir", str(site.root), "--http", f"127.0.0.1:{port}"],
    )
    site.start_worker(site.worker_config("w1", JOBS), key="worker")
    site.wait_job("w1", "good.one", lambda j: j.status == "success")
    site.wait_job("w1", "bad", lambda j: j.status == "failed")
    anyio.run(_dead_letter, site, backend="asyncio")
    url = f"http://127.0.0.1:{port}/metrics"

    def complete() -> str | None:
        text = _scrape(url)
        wanted = ("mirrorbus_dead_letters_total 1.0", 'stream="MIRRORBUS_EVT"', "view_bytes")
        return text if all(w in text for w in wanted) else None

    text = wait_for(complete, 30, "every series in /metrics")
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    yield names


def _expressions() -> dict[str, list[str]]:
    """Every PromQL expression of the rules, their tests' series and the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {
        RULES.name: [RULES.read_text()],
        RULE_TESTS.name: re.findall(r"series: '([^']*)'", RULE_TESTS.read_text()),
        DASHBOARD.name: exprs,
    }


def test_every_series_named_is_one_the_manager_exports(exported: dict[str, set[str]]) -> None:
    assert exported["mirrorbus_job_consecutive_failures"] >= {"worker", "job"}
    assert exported["mirrorbus_stream_bytes"] == {"stream"}
    for source, texts in _expressions().items():
        for text in texts:
            for name in set(METRIC.findall(text)):
                assert name in exported, f"{source}: {name} is not exported"
    for series in _expressions()[RULE_TESTS.name]:
        name, _, labels = series.partition("{")
        given = set(re.findall(r"(\w+)=", labels)) - {"instance"}  # instance: from the scrape
        assert given == exported[name], f"{RULE_TESTS.name}: {series} has labels {given}"


def test_the_dashboard_is_grafana_json_over_one_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mirrorbus" and dashboard["panels"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert METRIC.search(target["expr"]), f"{panel['title']}: no mirrorbus series"


def test_failures_in_a_row_count_from_the_last_success(tmp_path: Path) -> None:
    view = StatusView(f"sqlite:///{tmp_path / 'view.db'}")
    subjects = Subjects()
    entries = []
    at = datetime(2024, 1, 1, tzinfo=UTC)
    for job, results in (("a", "FSFF"), ("b", "FF"), ("c", "FFS")):
        for i, result in enumerate(results):
            run = f"{job}{i}"
            meta = {"worker": "w1", "job": job, "run_id": run}
            events = [RunStarted(id=f"{run}s", at=at + timedelta(minutes=i), **meta)]
            end = at + timedelta(minutes=i, seconds=30)
            if result == "S":
                events.append(RunSucceeded(id=f"{run}e", at=end, attempt=1, **meta))
            else:
                events.append(AttemptFailed(id=f"{run}e", at=end, attempt=1, error="x", **meta))
            for ev in events:
                entries.append((len(entries) + 1, subjects.job_events("w1", job), encode(ev)))
    try:
        view.apply(entries)
        assert consecutive_failures(view) == {("w1", "a"): 2, ("w1", "b"): 2}
        # The status page's strip: the last two runs of each job, newest first.
        recent = [(r.job, r.run_id, r.result) for r in view.recent_runs(2)]
        assert recent == [
            ("a", "a3", "failed"),
            ("a", "a2", "failed"),
            ("b", "b1", "failed"),
            ("b", "b0", "failed"),
            ("c", "c2", "success"),
            ("c", "c1", "failed"),
        ]
    finally:
        view.close()
