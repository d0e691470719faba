"""Bad input at the command line: a broken worker config names the file, the key and the
problem in one line on stderr and exits non-zero, before anything connects anywhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # every test here starts processes

GOOD = """
[global]
name = "w1"
mirror_dir = "/tmp/mb-mirrors"
log_dir = "/tmp/mb-logs/{{.Name}}"

[[mirrors]]
name = "hello"
provider = "command"
command = "/bin/true"
"""


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mirrorbus", "worker", "-c", str(path), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(GOOD + "[[mirrors\n", "invalid TOML", id="toml-syntax"),
        pytest.param(
            GOOD.replace('provider = "command"', 'provider = "ftp"'),
            "mirrors[0] (hello): key 'provider': unknown provider 'ftp'",
            id="unknown-provider",
        ),
        pytest.param(
            GOOD.replace('name = "hello"\n', ""), "mirrors[0]: key 'name':", id="missing-name"
        ),
        pytest.param(
            GOOD + '\n[[mirrors]]\nname = "hello"\nprovider = "command"\ncommand = "/bin/false"\n',
            "key 'name': duplicate job name 'hello'",
            id="duplicate-name",
        ),
        pytest.param(
            GOOD.replace('name = "w1"', 'name = "w/1"'),
            "[global]: key 'name': worker name 'w/1' is not allowed",
            id="invalid-worker-name",
        ),
    ],
)
def test_broken_worker_config_is_one_line_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(text)
    result = run_check(path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"mirrorbus worker: error: {path}")
    assert expected in lines[0]
    assert result.stdout == ""


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_check(tmp_path / "nope.toml")
    assert result.returncode != 0
    assert result.stderr.startswith(f"mirrorbus worker: error: {tmp_path / 'nope.toml'}: ")
    assert "No such file" in result.stderr


def test_check_prints_the_jobs_and_connects_nowhere(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    result = run_check(path)
    assert result.returncode == 0, result.stderr
    assert "hello  [command]" in result.stdout
    assert "/tmp/mb-logs/hello" in result.stdout


def test_worker_without_bus_settings_says_how_to_connect(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    result = subprocess.run(
        [sys.executable, "-m", "mirrorbus", "worker", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"mirrorbus worker: error: {path}: key 'bus': no [bus]")
