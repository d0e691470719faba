"""The status outputs' settings of a manager or project config: ``[http]``, ``[files]`` and
``[mirrorz] site``.

Plain data, apart from the servers and files that use them (:mod:`mirrorbus.manager.outputs`),
so that reading a config does not import the view or the HTTP stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mirrorbus.config.listen import DEFAULT_LISTEN, HttpSettings, parse_listen
from mirrorbus.config.schema import Kind, settings_table
from mirrorbus.errors import ConfigError

SITE_REQUIRED = ("url", "abbr")
"""The keys of ``[mirrorz.site]`` mirrorz.json cannot do without."""


@dataclass(frozen=True, slots=True)
class OutputSettings:
    """``[http]``, ``[files] jobs_json`` / ``mirrorz_json`` and ``[mirrorz] site``."""

    http: HttpSettings = field(default_factory=HttpSettings)
    jobs_json: Path | None = None
    mirrorz_json: Path | None = None
    site: Mapping[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> bool:
        return self.jobs_json is not None or self.mirrorz_json is not None

    @property
    def active(self) -> bool:
        return self.http.enable or self.files


def check_site(site: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The site block, with mirrorz's required keys checked (``source`` names the config)."""
    for key in SITE_REQUIRED:
        if not isinstance(site.get(key), str) or not site[key]:
            raise ConfigError(
                "mirrorz needs the site's url and abbr, e.g. "
                '[mirrorz.site] url = "https://mirrors.example.org", abbr = "EXAMPLE"',
                file=source,
                key=f"mirrorz.site.{key}",
            )
    url = str(site["url"])
    if url.endswith("/"):
        raise ConfigError("must not end with '/'", file=source, key="mirrorz.site.url")
    return dict(site)


HTTP_KEYS: Mapping[str, Kind] = {
    "enable": Kind.BOOL,
    "listen": Kind.STR,
    "tls_cert": Kind.STR,
    "tls_key": Kind.STR,
    "allow_origin": Kind.ANY,  # one origin or a list: _allow_origin says which
}
FILES_KEYS: Mapping[str, Kind] = {"jobs_json": Kind.STR, "mirrorz_json": Kind.STR}
MIRRORZ_KEYS: Mapping[str, Kind] = {"site": Kind.TABLE}  # mirrorz's own keys, free-form
OUTPUT_SECTIONS: Mapping[str, Mapping[str, Kind]] = {
    "http": HTTP_KEYS,
    "files": FILES_KEYS,
    "mirrorz": MIRRORZ_KEYS,
}
"""The sections of a manager or project file read here."""


def output_settings(doc: Mapping[str, object], source: Path) -> OutputSettings:
    """``[http]`` (enable, listen, tls_cert, tls_key), ``[files]`` (jobs_json, mirrorz_json)
    and ``[mirrorz.site]`` of a manager or project config.  Relative paths are relative to the
    config file."""
    http = settings_table(doc, "http", HTTP_KEYS, source)
    files = settings_table(doc, "files", FILES_KEYS, source)
    mz = settings_table(doc, "mirrorz", MIRRORZ_KEYS, source)
    listen = http.text("listen", DEFAULT_LISTEN)
    parse_listen(listen, str(source))
    tls_cert = http.path("tls_cert", source)
    tls_key = http.path("tls_key", source)
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("TLS needs both tls_cert and tls_key", file=source, key="http")
    for key, value in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        if value is not None and not value.is_file():
            raise ConfigError(f"file {value} does not exist", file=source, key=f"http.{key}")
    allow_origin = _allow_origin(http.values.get("allow_origin", "*"), source)
    mirrorz_json = files.path("mirrorz_json", source)
    site = mz.table("site")
    if mirrorz_json is not None:
        site = check_site(site, str(source))
    return OutputSettings(
        http=HttpSettings(
            enable=http.flag("enable"),
            listen=listen,
            tls_cert=tls_cert,
            tls_key=tls_key,
            allow_origin=allow_origin,
        ),
        jobs_json=files.path("jobs_json", source),
        mirrorz_json=mirrorz_json,
        site=site,
    )


def _allow_origin(value: object, source: Path) -> str | tuple[str, ...]:
    """``[http] allow_origin``: ``"*"``, one origin, a list of origins, or ``""`` (none)."""
    if isinstance(value, str):
        origins: tuple[str, ...] = (value,) if value not in ("", "*") else ()
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        origins = tuple(value)
    else:
        raise ConfigError(
            'must be "*", an origin like "https://mirrorz.org", or a list of origins',
            file=source,
            key="http.allow_origin",
        )
    for origin in origins:
        if origin.rstrip("/") != origin or "://" not in origin:
            raise ConfigError(
                f"{origin!r} is not an origin (scheme://host[:port], no path or trailing '/')",
                file=source,
                key="http.allow_origin",
            )
    return tuple(value) if isinstance(value, list) else value


def with_http(outputs: OutputSettings, listen: str | None) -> OutputSettings:
    """``--http ADDR`` turns the HTTP server on at ADDR (overriding ``[http] listen``)."""
    if listen is None:
        return outputs
    parse_listen(listen, "--http")
    return replace(outputs, http=replace(outputs.http, enable=True, listen=listen))
