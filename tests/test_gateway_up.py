"""``mirrorbus up --tunasync-api ADDR``: the embedded default with tunasync's API, as an
operator starts it; an old worker registers and reports, and ``mirrorbus ctl`` sees it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from e2e import wait_for
from gateway_harness import mirror_status, registration

from mirrorbus.host.server import free_port

pytestmark = pytest.mark.e2e  # every test here starts processes

CONFIG = """
[global]
name = "solo"
mirror_dir = "mirrors"
log_dir = "logs/{{.Name}}"
interval = 60

[[mirrors]]
name = "quick"
provider = "command"
command = "/bin/true"
"""


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status, json.loads(reply.read())


def test_up_serves_tunasyncs_api(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    listen = f"127.0.0.1:{free_port()}"
    env = dict(os.environ)
    out = tmp_path / "up.out"
    argv = [sys.executable, "-m", "mirrorbus", "up", "-c", str(config), "--state-dir", str(state)]
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [*argv, "--port", str(free_port()), "--tunasync-api", listen],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    try:
        wait_for(lambda: "Ctrl-C stops everything" in out.read_text(), 60, "the banner")
        assert f"  tunasync   http://{listen}/" in out.read_text()
        assert (state / "pki" / "gateway.crt").is_file()

        def pong() -> bool:
            try:
                with urllib.request.urlopen(f"http://{listen}/ping", timeout=2) as r:
                    return bool(json.loads(r.read()) == {"message": "pong"})
            except OSError:
                return False

        wait_for(pong, 30, "tunasync's API")
        assert _post(f"http://{listen}/workers", registration("old1", "http://h:6000/"))[0] == 200
        report = mirror_status("debian", "old1", "success", size="8G")
        assert _post(f"http://{listen}/workers/old1/jobs/debian", report)[0] == 200

        def listed() -> list[tuple[str, str, str]] | None:
            ctl = subprocess.run(
                [*argv[:3], "ctl", "--state-dir", str(state), "list", "--all", "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
            jobs = [(j["name"], j["status"], j["size"]) for j in json.loads(ctl.stdout or "[]")]
            return jobs if ("debian", "success", "8G") in jobs else None

        assert wait_for(listed, 30, "the old worker's job in ctl list")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert proc.returncode == 0, out.read_text()[-2000:]
