"""The status outputs a view feeds: the HTTP server and the status files.

The manager runs them next to its projector; ``mirrorbus project`` runs them next to its own
projector on another host.  Both hand in the same pieces: the view, the :class:`Changes` the
projector bumps, these settings, and how to ask the stream for its last sequence (for the lag
metric) and the streams for their size (the storage metrics).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from mirrorbus.config.outputs import OutputSettings
from projections.changes import Changes
from projections.files import StatusFiles
from projections.status_view import StatusView

if TYPE_CHECKING:
    from mirrorbus.manager.http import StatusHttp


async def run_outputs(
    view: StatusView,
    changes: Changes,
    settings: OutputSettings,
    last_sequence: Callable[[], Awaitable[int]] | None = None,
    stream_usage: Callable[[], Awaitable[dict[str, tuple[int, int]]]] | None = None,
    *,
    task_status: TaskStatus[StatusHttp | None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run what ``settings`` asks for; ``started`` with the HTTP server (or None)."""
    async with anyio.create_task_group() as tg:
        if settings.files:
            files = StatusFiles(
                view,
                changes,
                jobs_json_path=settings.jobs_json,
                mirrorz_path=settings.mirrorz_json,
                site=settings.site,
            )
            await tg.start(files.run)
        server: StatusHttp | None = None
        if settings.http.enable:
            # Imported only to serve: a manager without HTTP never loads aiohttp.
            from mirrorbus.bus.transport import allow_aiohttp

            allow_aiohttp()
            from mirrorbus.manager.http import StatusHttp

            server = StatusHttp(
                view,
                changes,
                settings.http,
                last_sequence=last_sequence,
                stream_usage=stream_usage,
            )
            await tg.start(server.run)
        task_status.started(server)
