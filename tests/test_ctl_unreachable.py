"""A ctl pointed at a NATS that is not there says so and exits, instead of retrying forever.

Real certificates (the session's test CA) and a real closed port on loopback: nothing listens
there, so every connection is refused, as when the server is down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mirrorbus.host.server import free_port

pytestmark = pytest.mark.e2e  # it runs the ctl as a process


def test_ctl_on_a_refusing_server_fails_with_one_line(pki_dir: Path) -> None:
    port = free_port()  # free: nothing listens, the connection is refused
    argv = [sys.executable, "-m", "mirrorbus", "ctl", "--url", f"tls://127.0.0.1:{port}"]
    argv += ["--ca-cert", str(pki_dir / "ca.crt"), "--cert", str(pki_dir / "admin.crt")]
    argv += ["--key", str(pki_dir / "admin.key"), "list", "--all"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIRRORBUS_")}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mirrorbus ctl list: error: cannot connect to tls://127.0.0.1:")
    assert "refused" in lines[0] or "Connect call failed" in lines[0]
