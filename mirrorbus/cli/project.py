"""``mirrorbus project NAME...``: run status projections on their own, with a reader certificate.

For a host that only serves status (a web server in front of the mirror, a monitoring box):
the tool reads the event stream by sequence (no consumer), folds it into its own SQLite view
(position stored in the same transaction, so it resumes where it stopped, also across
restarts of the manager or of nats-server) and keeps its outputs current:

    jobs-json   tunasync's GET /jobs JSON written to a file (e.g. the site's tunasync.json)
    mirrorz     mirrorz.json (format v1.7)
    http        the read API, /metrics and the live status page, as the manager serves them

A reader certificate may read the event stream and query, nothing else, so this tool can
neither forge an event nor command a worker, nor disturb anybody else's reading.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import anyio
import typer

from mirrorbus.bus import Bus, connect
from mirrorbus.cli.common import LogFormat, one_line_errors, run_async, setup_logging
from mirrorbus.cli.services import (
    Debug,
    LogFormatOpt,
    StateDir,
    Verbose,
    WithSystemd,
    _until_signal,
)
from mirrorbus.config.outputs import OutputSettings, check_site, with_http
from mirrorbus.config.site import project_config
from mirrorbus.errors import BusError, ConfigError, NotFound
from mirrorbus.manager.outputs import run_outputs
from mirrorbus.manager.projector import Projector
from mirrorbus.sdnotify import Notifier
from projections.changes import Changes
from projections.status_view import StatusView

log = logging.getLogger("mirrorbus")


class Output(StrEnum):
    jobs_json = "jobs-json"
    mirrorz = "mirrorz"
    http = "http"


def view_url(value: str) -> str:
    """A SQLAlchemy URL as given, or a plain path as a SQLite URL."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


async def wait_for_stream(bus: Bus) -> None:
    """Wait until the event stream exists (the manager creates it; a reader cannot)."""
    said = False
    while True:
        try:
            await bus.stream_state(bus.subjects.evt_stream)
            return
        except NotFound:
            if not said:
                log.warning(
                    "stream %s does not exist yet: waiting for the manager",
                    bus.subjects.evt_stream,
                )
                said = True
        except BusError as exc:
            raise BusError(f"cannot read stream {bus.subjects.evt_stream}: {exc}") from None
        await anyio.sleep(1)


def _outputs(
    names: list[Output],
    base: OutputSettings,
    jobs_json: Path | None,
    mirrorz_json: Path | None,
    http: str | None,
    site_url: str | None,
    site_abbr: str | None,
) -> OutputSettings:
    wanted = set(names)
    jobs_path = jobs_json or base.jobs_json
    mirrorz_path = mirrorz_json or base.mirrorz_json
    if Output.jobs_json in wanted and jobs_path is None:
        raise ConfigError("jobs-json needs a path: --jobs-json PATH or [files] jobs_json")
    site = dict(base.site)
    if site_url:
        site["url"] = site_url
    if site_abbr:
        site["abbr"] = site_abbr
    if Output.mirrorz in wanted:
        if mirrorz_path is None:
            raise ConfigError("mirrorz needs a path: --mirrorz-json PATH or [files] mirrorz_json")
        site = check_site(site, "mirrorbus project mirrorz")
    result = OutputSettings(
        http=replace(base.http, enable=False),
        jobs_json=jobs_path if Output.jobs_json in wanted else None,
        mirrorz_json=mirrorz_path if Output.mirrorz in wanted else None,
        site=site,
    )
    if Output.http in wanted:
        result = with_http(result, http or base.http.listen)
    return result


@one_line_errors("mirrorbus project")
def project(
    names: Annotated[
        list[Output],
        typer.Argument(
            help="What to keep current: jobs-json, mirrorz, http (one or more).", show_default=False
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config: [bus] (a reader certificate), [database] url (this tool's own view), "
            "[http], [files], [mirrorz].",
            show_default=False,
        ),
    ] = None,
    state_dir: StateDir = None,
    view: Annotated[
        str | None,
        typer.Option(
            "--view",
            help="This tool's own view: a SQLite file or SQLAlchemy URL "
            "[default: [database] url, or STATE/project.db].",
            show_default=False,
        ),
    ] = None,
    jobs_json: Annotated[
        Path | None,
        typer.Option(
            "--jobs-json", help="Where to write tunasync's /jobs JSON.", show_default=False
        ),
    ] = None,
    mirrorz_json: Annotated[
        Path | None,
        typer.Option("--mirrorz-json", help="Where to write mirrorz.json.", show_default=False),
    ] = None,
    site_url: Annotated[
        str | None,
        typer.Option(
            "--site-url", help="mirrorz site.url (else [mirrorz.site]).", show_default=False
        ),
    ] = None,
    site_abbr: Annotated[
        str | None,
        typer.Option(
            "--site-abbr", help="mirrorz site.abbr (else [mirrorz.site]).", show_default=False
        ),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http", help="HOST:PORT for http [default: [http] listen].", show_default=False
        ),
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            "--consumer",
            hidden=True,
            help="Ignored (kept for old command lines): the log is read without a consumer.",
            show_default=False,
        ),
    ] = None,
    verbose: Verbose = False,
    debug: Debug = False,
    with_systemd: WithSystemd = False,
    log_format: LogFormatOpt = LogFormat.text,
) -> None:
    """Keep status outputs current from the event stream, with a reader certificate.

    Example: mirrorbus project jobs-json --state-dir ./state --jobs-json /srv/www/tunasync.json
    """
    setup_logging(verbose, debug, with_systemd, log_format)
    pc = project_config(config, state_dir, view_url(view) if view else None)
    outputs = _outputs(names, pc.outputs, jobs_json, mirrorz_json, http, site_url, site_abbr)
    del consumer  # the log is read by sequence, without a consumer of its own
    status_view = StatusView(pc.view_url)

    notifier = Notifier.from_environment()  # under systemd: Type=notify, as the manager

    async def main() -> None:
        # Signals are handled from the start: a stop while it waits for the stream or
        # catches up ends it cleanly instead of killing it.
        bus = None

        def stop(name: str) -> None:
            notifier.stopping(f"stopping on {name}")
            tg.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as tg:
                await tg.start(_until_signal, stop)
                bus = await connect(pc.bus)
                await wait_for_stream(bus)
                changes = Changes()
                projector = Projector(bus, status_view, on_applied=changes.applied)
                await tg.start(projector.run)
                await tg.start(
                    run_outputs,
                    status_view,
                    changes,
                    outputs,
                    bus.last_sequence,
                    bus.stream_usage,
                )
                log.info(
                    "projecting %s (view %s, position %d)",
                    ", ".join(n.value for n in names),
                    status_view.url,
                    projector.position,
                )
                notifier.ready(f"projecting {', '.join(n.value for n in names)}")
                tg.start_soon(notifier.watchdog, lambda: not bus.is_closed)
        finally:
            with anyio.CancelScope(shield=True):
                if bus is not None:
                    await bus.close()
            status_view.close()

    run_async(main)
