"""Where the ctl finds its connection settings: system file < user file < -c < environment <
flags, key by key; a state directory gives every key at its level."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorbus.config import ctl
from mirrorbus.config.ctl import BusFlags, ctl_settings
from mirrorbus.errors import ConfigError
from mirrorbus.host.instance import Instance, InstanceInfo


def _bus(path: Path, **keys: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[bus]\n" + "".join(f'{k} = "{v}"\n' for k, v in keys.items()))
    return path


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in (
        "ca.crt",
        "a.crt",
        "a.key",
        "b.crt",
        "b.key",
        "c.crt",
        "c.key",
        "admin.crt",
        "admin.key",
    ):
        (tmp_path / name).write_text("x")
    system = tmp_path / "etc" / "ctl.toml"
    user = tmp_path / "home" / ".config" / "mirrorbus" / "ctl.toml"
    monkeypatch.setattr(ctl, "CTL_CONFIG_PATHS", (user, system))
    _bus(
        system,
        url="tls://system:1",
        ca_cert=str(tmp_path / "ca.crt"),
        cert=str(tmp_path / "a.crt"),
        key=str(tmp_path / "a.key"),
    )
    _bus(user, url="tls://user:2")
    return tmp_path


def test_each_key_from_the_last_layer_that_gives_it(files: Path) -> None:
    only_files = ctl_settings(environ={})
    assert only_files.servers == ("tls://user:2",)  # user over system
    assert only_files.cert == files / "a.crt"  # from the system file

    given = _bus(files / "given.toml", cert=str(files / "b.crt"), key=str(files / "b.key"))
    with_c = ctl_settings(given, environ={})
    assert (with_c.servers, with_c.cert) == (("tls://user:2",), files / "b.crt")

    env = {"MIRRORBUS_URL": "tls://env:3,tls://env:4", "MIRRORBUS_PREFIX": "site"}
    with_env = ctl_settings(given, environ=env)
    assert with_env.servers == ("tls://env:3", "tls://env:4") and with_env.prefix == "site"

    flags = BusFlags(url="tls://flag:5", cert=files / "c.crt", key=files / "c.key")
    with_flags = ctl_settings(given, flags=flags, environ=env)
    assert with_flags.servers == ("tls://flag:5",)
    assert (with_flags.cert, with_flags.key) == (files / "c.crt", files / "c.key")
    assert with_flags.prefix == "site"  # not given as a flag: the environment's


def test_a_state_directory_gives_every_key_at_its_level(files: Path) -> None:
    root = files / "state"
    Instance(root).write(InstanceInfo(host="127.0.0.1", port=14333))
    (root / "pki").symlink_to(files)
    from_env = ctl_settings(environ={"MIRRORBUS_STATE_DIR": str(root)})
    assert from_env.servers == ("tls://127.0.0.1:14333",)
    assert from_env.cert == root / "pki" / "admin.crt"
    # A flag still wins over the state directory from the environment.
    flagged = ctl_settings(
        flags=BusFlags(url="tls://flag:5"), environ={"MIRRORBUS_STATE_DIR": str(root)}
    )
    assert flagged.servers == ("tls://flag:5",) and flagged.cert == root / "pki" / "admin.crt"


def test_missing_settings_and_files_are_clear_errors(
    files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctl, "CTL_CONFIG_PATHS", ())
    with pytest.raises(ConfigError, match="no servers, ca_cert, cert, key: pass --state-dir"):
        ctl_settings(environ={})
    with pytest.raises(ConfigError, match=r"key 'bus\.cert': file .*nope\.crt does not exist"):
        ctl_settings(
            flags=BusFlags(
                url="tls://x:1",
                ca_cert=files / "ca.crt",
                cert=files / "nope.crt",
                key=files / "a.key",
            ),
            environ={},
        )
