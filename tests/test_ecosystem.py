"""What the tools around mirrorbus need of it: CORS on the read API, mirrorz's ``desc`` and
``help``, JSON log lines, and the command header of every attempt's log.

Real parts throughout: the aiohttp server on loopback, SQLite views, a real worker and manager
on a real nats-server, real processes writing real log files.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from e2e import PYTHON, Site

from mirrorbus.config.outputs import output_settings
from mirrorbus.config.worker import load_worker_config
from mirrorbus.errors import ConfigError
from mirrorbus.events import JobConfigured, Subjects, encode
from mirrorbus.host.server import free_port
from mirrorbus.manager.http import HttpSettings, StatusHttp, allowed_origin
from mirrorbus.worker.joblog import HEADER_PREFIX, command_header, new_attempt_log
from mirrorbus.worker.providers.command import CommandProvider
from projections.changes import Changes
from projections.mirrorz import mirrorz
from projections.status_view import StatusView

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _get(url: str, origin: str | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers={"Origin": origin} if origin else {})
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status, dict(r.headers)


async def _serve_and_get(
    tmp_path: Path, settings: HttpSettings, paths: list[tuple[str, str | None]]
) -> list[dict[str, str]]:
    view = StatusView(f"sqlite:///{tmp_path / 'view.db'}")
    http = StatusHttp(view, Changes(), settings)
    headers: list[dict[str, str]] = []
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(http.run)
            for path, origin in paths:
                status, h = await anyio.to_thread.run_sync(_get, http.url + path, origin)
                assert status == 200, path
                headers.append(h)
            tg.cancel_scope.cancel()
    finally:
        view.close()
    return headers


@pytest.mark.anyio
async def test_the_read_api_may_be_read_from_other_sites_by_default(tmp_path: Path) -> None:
    settings = HttpSettings(enable=True, listen=f"127.0.0.1:{free_port()}")
    jobs, workers, ping, metrics, page = await _serve_and_get(
        tmp_path,
        settings,
        [
            ("/jobs", "https://mirrorz.org"),
            ("/workers", None),
            ("/ping", None),
            ("/metrics", "https://mirrorz.org"),
            ("/", "https://mirrorz.org"),
        ],
    )
    for h in (jobs, workers, ping):
        assert h["Access-Control-Allow-Origin"] == "*"
    for h in (metrics, page):  # not part of the read API
        assert "Access-Control-Allow-Origin" not in h


@pytest.mark.anyio
async def test_a_list_of_origins_answers_each_with_itself(tmp_path: Path) -> None:
    doc = {"http": {"allow_origin": ["https://mirrorz.org", "https://status.example.org"]}}
    settings = output_settings(doc, tmp_path / "manager.toml").http
    settings = HttpSettings(
        enable=True, listen=f"127.0.0.1:{free_port()}", allow_origin=settings.allow_origin
    )
    listed, other, none = await _serve_and_get(
        tmp_path,
        settings,
        [("/jobs", "https://mirrorz.org"), ("/jobs", "https://evil.example"), ("/jobs", None)],
    )
    assert listed["Access-Control-Allow-Origin"] == "https://mirrorz.org"
    assert listed["Vary"] == "Origin"
    assert "Access-Control-Allow-Origin" not in other and other["Vary"] == "Origin"
    assert "Access-Control-Allow-Origin" not in none


def test_allow_origin_settings_and_their_errors(tmp_path: Path) -> None:
    source = tmp_path / "manager.toml"
    assert output_settings({}, source).http.allow_origin == "*"
    assert output_settings({"http": {"allow_origin": ""}}, source).http.allow_origin == ""
    assert allowed_origin("", "/jobs", "https://x.org") is None
    assert allowed_origin("*", "/workers/w1/jobs", None) == "*"
    for bad in (3, ["https://ok.org", 1], "https://x.org/", "mirrorz.org"):
        with pytest.raises(ConfigError) as err:
            output_settings({"http": {"allow_origin": bad}}, source)
        assert "http.allow_origin" in str(err.value) and str(source) in str(err.value)


def test_a_view_made_before_desc_and_help_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    StatusView(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as db:  # the jobs table as the first release made it
        db.execute("ALTER TABLE jobs DROP COLUMN description")
        db.execute("ALTER TABLE jobs DROP COLUMN help")
    view = StatusView(f"sqlite:///{path}")
    try:
        event = JobConfigured(
            id="e1",
            at=T0,
            worker="w1",
            job="debian",
            upstream="rsync://u/debian/",
            desc="Debian <GNU/Linux>",
            help="/help/debian",
        )
        subject = Subjects().job_events("w1", "debian")
        assert view.apply([(1, subject, encode(event))]).applied == 1
        (state,) = view.jobs()
        assert (state.desc, state.help) == ("Debian <GNU/Linux>", "/help/debian")
        (entry,) = mirrorz(view.jobs(), {"url": "https://m.example.org", "abbr": "M"})["mirrors"]
        assert (entry["desc"], entry["help"]) == ("Debian <GNU/Linux>", "/help/debian")
    finally:
        view.close()


def _job(name: str, desc: str) -> str:
    return f"""
[[mirrors]]
name = "{name}"
provider = "command"
upstream = "https://example.org/{name}/"
desc = "{desc}"
help = "https://help.example.org/{name}"
command = '''/bin/sh -c 'echo run >> "$TUNASYNC_WORKING_DIR/runs"' '''
"""


def test_desc_and_help_reach_the_view_and_a_reload_of_them_restarts_nothing(site: Site) -> None:
    config = site.worker_config("w1", _job("alpine", "Alpine Linux"))
    cfg = load_worker_config(config)
    assert (cfg.mirrors[0].desc, cfg.mirrors[0].help) == (
        "Alpine Linux",
        "https://help.example.org/alpine",
    )
    site.start_manager()
    site.start_worker(config, key="worker")
    site.wait_job("w1", "alpine", lambda j: j.status == "success" and j.desc == "Alpine Linux")
    runs = site.workdir("w1", "alpine") / "runs"
    assert runs.read_text() == "run\n"

    site.worker_config("w1", _job("alpine", "Alpine Linux, musl and busybox"))
    result = site.ctl("reload", "-w", "w1")
    assert result.returncode == 0, result.stderr
    assert "0 added, 0 removed, 0 modified" in result.stdout
    state = site.wait_job("w1", "alpine", lambda j: j.desc.startswith("Alpine Linux, musl"))
    assert state.help == "https://help.example.org/alpine"
    assert state.status == "success"
    assert runs.read_text() == "run\n"  # not run again for a new description


@pytest.mark.e2e
def test_log_format_json_gives_one_object_a_line(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(
        '[global]\nname = "w1"\nlog_dir = "/tmp/{{.Name}}"\nmirror_dir = "/tmp"\nintervall = 5\n'
    )
    result = subprocess.run(
        [*PYTHON, "worker", "-c", str(config), "--check", "--log-format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines, "no log line"
    warning = next(line for line in lines if "intervall" in line["message"])
    assert warning["level"] == "warning" and warning["logger"].startswith("mirrorbus")
    assert datetime.fromisoformat(warning["time"]).tzinfo is not None
    bad = subprocess.run(
        [*PYTHON, "worker", "-c", str(config), "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "xml" in bad.stderr


@pytest.mark.e2e
@pytest.mark.anyio
async def test_every_attempt_log_starts_with_the_command_it_ran(tmp_path: Path) -> None:
    """The header names the argv (shell-quoted), working dir and variables set, and the
    job's patterns do not see it: ``fail_on_match`` matches the command's own text."""
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    config = tmp_path / "worker.toml"
    config.write_text(
        f'[global]\nname = "w1"\nlog_dir = "{tmp_path}/logs/{{{{.Name}}}}"\n'
        f'mirror_dir = "{tmp_path}"\n\n'
        '[[mirrors]]\nname = "quote"\nprovider = "command"\nupstream = "https://u.example/"\n'
        f'mirror_dir = "{workdir}"\n'
        "command = '''/bin/echo 'two words' FAILWORD'''\n"
        "fail_on_match = 'FAILWORD FAILWORD'\n"
        'env = { SECRET_TOKEN = "hunter2" }\n'
    )
    mirror = load_worker_config(config).mirror("quote")
    log = new_attempt_log(mirror.log_dir, mirror.name, T0)
    outcome = await CommandProvider(mirror).run_attempt(log)
    assert outcome.ok, outcome.error
    lines = log.path.read_text().splitlines()
    assert lines[0] == f"{HEADER_PREFIX}command: /bin/echo 'two words' FAILWORD"
    assert shlex.split(lines[0].removeprefix(f"{HEADER_PREFIX}command: ")) == list(mirror.command)
    assert lines[1] == f"{HEADER_PREFIX}working dir: {workdir}"
    keys = lines[2].removeprefix(f"{HEADER_PREFIX}environment set: ").split()
    assert {"SECRET_TOKEN", "TUNASYNC_MIRROR_NAME", "TUNASYNC_LOG_FILE"} <= set(keys)
    assert "hunter2" not in log.path.read_text()  # names only, never values
    assert lines[3] == "two words FAILWORD"  # then the output itself


def test_a_wrapped_command_shows_how_it_was_launched_without_secrets() -> None:
    docker = ["docker", "run", "--rm", "-e", "RSYNC_PASSWORD=hunter2", "img", "rsync", "-a"]
    text = command_header(
        ["rsync", "-a"], Path("/srv"), {"RSYNC_PASSWORD": "hunter2"}, os.environ, docker
    )
    assert "hunter2" not in text
    assert f"{HEADER_PREFIX}launched as: docker run --rm -e RSYNC_PASSWORD=... img rsync -a" in (
        text
    )
    secret = command_header(
        ["sync.sh", "--token", "t0k", "--api-key=k3y", "rsync://mirror:pa55@up.example/d/"],
        Path("/srv"),
        {},
        {},
    )
    assert not {"t0k", "k3y", "pa55"} & set(re.split(r"[\s=:@]", secret))
    assert secret.splitlines()[0] == (
        f"{HEADER_PREFIX}command: sync.sh --token ... --api-key=... rsync://mirror:...@up.example/d/"
    )
    plain = command_header(["rsync", "-a"], Path("/srv"), dict(os.environ), os.environ, None)
    assert plain.splitlines()[2] == f"{HEADER_PREFIX}environment set: (none)"
    assert "launched as" not in plain


@pytest.mark.anyio
async def test_the_page_api_answers_and_refuses_clearly(tmp_path: Path) -> None:
    view = StatusView(f"sqlite:///{tmp_path / 'view.db'}")
    subject = Subjects().job_events("w1", "debian")
    configured = JobConfigured(id="e1", at=T0, worker="w1", job="debian", interval=3600)
    view.apply([(1, subject, encode(configured))])
    http = StatusHttp(view, Changes(), HttpSettings(enable=True, listen=f"127.0.0.1:{free_port()}"))

    def get(path: str) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(http.url + path, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    try:
        async with anyio.create_task_group() as tg:
            await tg.start(http.run)
            status, doc = await anyio.to_thread.run_sync(get, "/api/status?runs=5")
            assert status == 200 and isinstance(doc, dict)
            (job,) = doc["jobs"]
            assert (job["worker"], job["name"], job["interval"], job["runs"]) == (
                "w1",
                "debian",
                3600,
                [],
            )
            assert await anyio.to_thread.run_sync(get, "/api/status?runs=x") == (
                400,
                {"error": "runs must be a whole number"},
            )
            assert await anyio.to_thread.run_sync(get, "/api/history?worker=w1&job=nope") == (
                404,
                {"error": "no job 'nope' on worker 'w1'"},
            )
            status, doc = await anyio.to_thread.run_sync(get, "/api/history?worker=w1&job=debian")
            assert status == 200 and isinstance(doc, dict) and doc["runs"] == []
            tg.cancel_scope.cancel()
    finally:
        view.close()
