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


def table(doc: dict[str, Any], name: str, source: Path) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError("must be a table", file=source, key=name)
    return value


def _path(values: dict[str, Any], key: str, section: str, source: Path) -> Path | None:
    value = values.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError("must be a path (a string)", file=source, key=f"{section}.{key}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (source.parent / path)


def output_settings(doc: dict[str, Any], source: Path) -> OutputSettings:
    """``[http]`` (enable, listen, tls_cert, tls_key), ``[files]`` (jobs_json, mirrorz_json)
    and ``[mirrorz.site]`` of a manager or project config.  Relative paths are relative to the
    config file."""
    http = table(doc, "http", source)
    files = table(doc, "files", source)
    mz = table(doc, "mirrorz", source)
    enable = http.get("enable", False)
    if not isinstance(enable, bool):
        raise ConfigError("must be true or false", file=source, key="http.enable")
    listen = http.get("listen", DEFAULT_LISTEN)
    if not isinstance(listen, str):
        raise ConfigError("must be a string like 127.0.0.1:14280", file=source, key="http.listen")
    parse_listen(listen, str(source))
    tls_cert = _path(http, "tls_cert", "http", source)
    tls_key = _path(http, "tls_key", "http", source)
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("TLS needs both tls_cert and tls_key", file=source, key="http")
    for key, value in (("tls_cert", tls_cert), ("tls_key", tls_key)):
        if value is not None and not value.is_file():
            raise ConfigError(f"file {value} does not exist", file=source, key=f"http.{key}")
    allow_origin = _allow_origin(http.get("allow_origin", "*"), source)
    mirrorz_json = _path(files, "mirrorz_json", "files", source)
    site = table(mz, "site", source) if "site" in mz else {}
    if mirrorz_json is not None:
        site = check_site(site, str(source))
    return OutputSettings(
        http=HttpSettings(
            enable=enable,
            listen=listen,
            tls_cert=tls_cert,
            tls_key=tls_key,
            allow_origin=allow_origin,
        ),
        jobs_json=_path(files, "jobs_json", "files", source),
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
