"""``mirrorbus project`` on its own with the reader certificate, against a real site.

It keeps tunasync.json and mirrorz.json current from the event stream, and goes on doing so
across a restart of itself (resuming from its own view), of the manager, and of nats-server.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from e2e import PYTHON, Site, wait_for
from test_e2e_worker import COUNTING_JOB, SLEEPING_JOB

from projections.tunasync import WEB_FIELDS


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def test_standalone_files_survive_restarts(site: Site, nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    www = tmp_path / "www"
    jobs_file, mirrorz_file = www / "tunasync.json", www / "mirrorz.json"
    config = site.worker_config(
        "w1",
        COUNTING_JOB.format(name="alpha", interval=60)
        + SLEEPING_JOB.format(name="beta", interval=60),
    )
    project = [
        *PYTHON,
        "project",
        "jobs-json",
        "mirrorz",
        "--state-dir",
        str(site.root),
        "--view",
        str(tmp_path / "project.db"),
        "--jobs-json",
        str(jobs_file),
        "--mirrorz-json",
        str(mirrorz_file),
        "--site-url",
        "https://mirrors.example.org",
        "--site-abbr",
        "EX",
        "-v",
    ]

    def statuses() -> dict[str, str]:
        items = _read(jobs_file) or []
        return {i["name"]: i["status"] for i in items}

    def mirrorz_letter(name: str) -> str:
        doc = _read(mirrorz_file) or {"mirrors": []}
        return next((m["status"][:1] for m in doc["mirrors"] if m["cname"] == name), "")

    def expect(beta: str, letter: str, what: str, timeout: float = 20) -> None:
        try:
            wait_for(
                lambda: (
                    statuses() == {"alpha": "success", "beta": beta}
                    and mirrorz_letter("beta") == letter
                ),
                timeout,
                what,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {statuses()}\n{site.tail_logs()}") from None

    # The project starts before anything else and waits for the stream.
    site._spawn("project", project)
    site.start_manager()
    site.start_worker(config)
    expect("syncing", "Y", "alpha success and beta syncing in the files")
    items = _read(jobs_file)
    assert [list(i) for i in items] == [list(WEB_FIELDS)] * 2
    assert items[0]["size"] == "1.5K"
    assert _read(mirrorz_file)["site"] == {"url": "https://mirrors.example.org", "abbr": "EX"}

    # Restart of the project itself; the change made while it was down shows after it.
    site.stop("project")
    assert site.ctl("stop", "-w", "w1", "beta").returncode == 0
    site.wait_job("w1", "beta", lambda j: j.status == "paused")
    site._spawn("project", project)
    expect("paused", "P", "beta paused after the project's restart")
    starts = re.findall(r"projecting from sequence (\d+)", site.output("project"))
    assert len(starts) == 2 and int(starts[1]) > 1  # resumed from its own view

    # Restart of the manager: the project does not depend on it.
    site.stop("manager")
    site.start_manager()
    assert site.ctl("start", "-w", "w1", "beta").returncode == 0
    expect("syncing", "Y", "beta syncing after the manager's restart")

    # Restart of nats-server: everybody reconnects, the project's consumer is still there.
    nats_server.server.stop()
    nats_server.server.start()
    wait_for(
        lambda: site.ctl("stop", "-w", "w1", "beta", timeout=20).returncode == 0,
        30,
        "ctl stop after the server's restart",
        interval=1,
    )
    expect("paused", "P", "beta paused after nats-server's restart", timeout=30)

    log = site.output("project")
    assert "ermission" not in log, log  # the reader certificate was enough for everything


def test_standalone_http_over_tls(site: Site, nats_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`mirrorbus project http` with a reader certificate serves /jobs, /ping and /metrics,
    here over HTTPS with a certificate of the site's CA."""
    import http.client
    import ssl
    import urllib.request

    from mirrorbus.host.server import free_port

    port = free_port()
    pki = nats_server.pki_dir
    config = tmp_path / "project.toml"
    config.write_text(
        "[bus]\n"
        f'url = "{nats_server.url}"\n'
        f'ca_cert = "{pki / "ca.crt"}"\n'
        f'cert = "{pki / "reader.crt"}"\n'
        f'key = "{pki / "reader.key"}"\n'
        "[database]\n"
        f'url = "sqlite:///{tmp_path / "project.db"}"\n'
        "[http]\n"
        "enable = true\n"
        f'listen = "127.0.0.1:{port}"\n'
        f'tls_cert = "{pki / "server.crt"}"\n'
        f'tls_key = "{pki / "server.key"}"\n'
    )
    site.start_manager()
    site.start_worker(site.worker_config("w1", COUNTING_JOB.format(name="alpha", interval=60)))
    site._spawn("project", [*PYTHON, "project", "http", "-c", str(config), "-v"])
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))

    def get(path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{path}", context=context, timeout=5
            ) as response:
                return bytes(response.read())
        except OSError:
            return None

    body = wait_for(
        lambda: (b := get("/jobs")) and b"success" in b and b, 30, "alpha's success over https"
    )
    items = json.loads(body)
    assert [i["name"] for i in items] == ["alpha"] and list(items[0]) == list(WEB_FIELDS)
    assert json.loads(get("/ping") or b"{}") == {"message": "pong"}
    metrics = (get("/metrics") or b"").decode()
    assert "mirrorbus_job_status{" in metrics and 'job="alpha"' in metrics
    plain = urllib.request.Request(f"http://127.0.0.1:{port}/jobs")
    with pytest.raises((OSError, http.client.HTTPException)):
        urllib.request.urlopen(plain, timeout=5)  # HTTPS only
