"""Status files next to a web server: tunasync's ``/jobs`` JSON and ``mirrorz.json``.

Each file is rewritten atomically (temp file in the same directory, fsync, rename) so a web
server never serves half a file, and only when its bytes change.  Writes are debounced: after
a change the writer waits ``debounce`` seconds and writes what the view holds then, so a
burst of events costs one write and a change shows within about ``debounce`` seconds.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from mirrorbus.errors import ProjectionError
from projections.changes import Changes
from projections.mirrorz import mirrorz
from projections.status_view import StatusView
from projections.tunasync import go_json, jobs_json

log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename; mode 0644 (the file is for the public)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StatusFiles:
    """Writes the configured files from ``view`` whenever ``changes`` moves."""

    def __init__(
        self,
        view: StatusView,
        changes: Changes,
        *,
        jobs_json_path: Path | None = None,
        mirrorz_path: Path | None = None,
        site: Mapping[str, Any] | None = None,
        debounce: float = 0.5,
    ) -> None:
        self.view = view
        self.changes = changes
        self.debounce = debounce
        self.renderers: dict[Path, Callable[[], bytes]] = {}
        if jobs_json_path is not None:
            self.renderers[jobs_json_path] = lambda: jobs_json(self.view.jobs())
        if mirrorz_path is not None:
            site_block = dict(site or {})
            self.renderers[mirrorz_path] = lambda: go_json(mirrorz(self.view.jobs(), site_block))
        self._written: dict[Path, bytes] = {}

    def write(self) -> int:
        """Render every file and write those that changed; return how many were written."""
        written = 0
        for path, render in self.renderers.items():
            data = render()
            if self._written.get(path) == data and path.exists():
                continue
            try:
                write_atomic(path, data)
            except OSError as exc:
                raise ProjectionError(f"cannot write {path}: {exc}") from None
            self._written[path] = data
            written += 1
        return written

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Write now (so the files exist from the start), then after every change."""
        seen = self.changes.version
        await anyio.to_thread.run_sync(self.write)
        log.info("writing %s", ", ".join(str(p) for p in self.renderers))
        task_status.started()
        while True:
            await self.changes.wait(seen)
            await anyio.sleep(self.debounce)
            seen = self.changes.version
            try:
                await anyio.to_thread.run_sync(self.write)
            except ProjectionError as exc:  # a full disk must not stop the projection
                log.error("%s", exc)
