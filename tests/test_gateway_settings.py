"""``[tunasync_api]`` and ``--tunasync-api``: defaults, and one clear line for each mistake."""

from __future__ import annotations

import subprocess
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from e2e import PYTHON

from mirrorbus.config.gateway import GatewaySettings, gateway_settings, with_listen
from mirrorbus.errors import ConfigError
from mirrorbus.events import Command
from mirrorbus.gateway.wire import worker_cmd

BAD_ADDRESS = ("--tunasync-api", "localhost")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "worker.toml"


def _settings(tmp_path: Path, text: str) -> GatewaySettings:
    path = tmp_path / "manager.toml"
    path.write_text(text)
    return gateway_settings(tomllib.loads(text), path)


def test_defaults_and_allow(tmp_path: Path) -> None:
    assert not _settings(tmp_path, "").enable
    on = _settings(tmp_path, "[tunasync_api]\n")
    assert (on.enable, on.listen, on.allow) == (True, "127.0.0.1:14242", ("127.0.0.0/8", "::1/128"))
    assert on.allows("127.0.0.1") and on.allows("::1") and on.allows("::ffff:127.0.0.5")
    assert not on.allows("10.0.0.1") and not on.allows(None) and not on.allows("nonsense")
    lan = _settings(tmp_path, '[tunasync_api]\nallow = ["10.1.0.0/16", "192.0.2.7"]\n')
    assert lan.allows("10.1.200.3") and lan.allows("192.0.2.7") and not lan.allows("127.0.0.1")
    assert with_listen(GatewaySettings(), "0.0.0.0:14242").listen == "0.0.0.0:14242"
    assert with_listen(GatewaySettings(), "0.0.0.0:14242").enable


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tunasync_api]\nallow = ["10.1.0.0/33"]\n', "key 'tunasync_api.allow': '10.1.0.0/33'"),
        ("[tunasync_api]\nallow = 3\n", "key 'tunasync_api.allow': must be a list of networks"),
        ('[tunasync_api]\nlisten = "nowhere"\n', "listen address 'nowhere' is not HOST:PORT"),
        ('[tunasync_api]\ntls_cert = "c.pem"\n', "key 'tunasync_api.tls_cert': file"),
        ("tunasync_api = 1\n", "key 'tunasync_api': must be a table"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(tmp_path, text)
    assert str(caught.value).startswith(str(tmp_path / "manager.toml"))
    assert message in str(caught.value)


@pytest.mark.e2e
def test_a_bad_address_on_the_command_line_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run(
        [*PYTHON, "up", "-c", str(EXAMPLE), "--state-dir", str(tmp_path / "s"), *BAD_ADDRESS],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "--tunasync-api" in out.stderr


def test_worker_cmd_is_tunasyncs() -> None:
    at = datetime(2024, 1, 1, tzinfo=UTC)

    def cmd(verb: str, job: str, force: bool = False) -> bytes:
        c = Command(
            id="c",
            at=at,
            verb=verb,
            worker="w",
            job=job,
            force=force,
            expires_at=at,  # type: ignore[arg-type]
        )
        return worker_cmd(c)

    assert cmd("start", "a&b", force=True) == (
        b'{"cmd":"start","mirror_id":"a\\u0026b","args":null,"options":{"force":true}}'
    )
    assert cmd("reload", "") == b'{"cmd":"reload","mirror_id":"","args":null,"options":null}'
