"""Small pure pieces of the status outputs: Go's JSON encoding, size parsing, listen
addresses and the [http]/[files]/[mirrorz] config checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrorbus.config.outputs import output_settings, with_http
from mirrorbus.errors import ConfigError
from mirrorbus.manager.http import parse_listen
from projections.metrics import parse_size
from projections.tunasync import go_json


def test_go_json_is_compact_utf8_and_html_escaped() -> None:
    assert go_json([]) == b"[]"
    assert go_json({"a": "<b>&\u2028é", "t": True, "n": -1}) == (
        '{"a":"\\u003cb\\u003e\\u0026\\u2028é","t":true,"n":-1}'.encode()
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5K", 1.5 * 1024),
        ("596G", 596 * 1024**3),
        ("12KiB", 12 * 1024),
        ("5GB", 5e9),
        ("3 MB", 3e6),
        ("42", 42.0),
        ("unknown", None),
        ("", None),
        ("about 3G", None),
    ],
)
def test_parse_size(text: str, expected: float | None) -> None:
    assert parse_size(text) == expected


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:14280") == ("127.0.0.1", 14280)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_listen(":8080") == ("0.0.0.0", 8080)
    with pytest.raises(ConfigError, match="is not HOST:PORT"):
        parse_listen("localhost")


def test_output_settings(tmp_path: Path) -> None:
    source = tmp_path / "manager.toml"
    off = output_settings({}, source)
    assert not off.active and off.http.listen == "127.0.0.1:14280"
    assert with_http(off, "0.0.0.0:9000").http.enable
    on = output_settings(
        {
            "http": {"enable": True},
            "files": {"jobs_json": "www/tunasync.json", "mirrorz_json": "/srv/mirrorz.json"},
            "mirrorz": {"site": {"url": "https://m.example.org", "abbr": "M"}},
        },
        source,
    )
    assert on.http.enable and on.jobs_json == tmp_path / "www/tunasync.json"
    assert on.mirrorz_json == Path("/srv/mirrorz.json")
    with pytest.raises(ConfigError, match=r"key 'mirrorz\.site\.abbr'"):
        output_settings(
            {"files": {"mirrorz_json": "/x"}, "mirrorz": {"site": {"url": "u"}}}, source
        )
    with pytest.raises(ConfigError, match=r"key 'http'.*both"):
        output_settings({"http": {"tls_cert": "c.pem"}}, source)
    with pytest.raises(ConfigError, match=r"key 'http\.enable'"):
        output_settings({"http": {"enable": "yes"}}, source)
