"""Tell readers of the view that it changed: the projector calls :meth:`Changes.applied`
after each committed batch; file writers and live pages wait with :meth:`Changes.wait`.

All calls happen on the event loop (the projector calls back after its thread returned), so
a plain counter and an :class:`anyio.Event` are enough; waiters never miss a change because
they wait for the counter to move past the value they saw, not for an edge.
"""

from __future__ import annotations

import anyio

from projections.rows import ApplyResult


class Changes:
    def __init__(self) -> None:
        self.version = 0
        self.position = 0
        self._event: anyio.Event | None = None  # made on first use, inside the event loop

    def applied(self, result: ApplyResult) -> None:
        """A batch was committed (the projector's ``on_applied``)."""
        self.position = result.position
        if result.applied or result.dead:
            self.bump()

    def bump(self) -> None:
        self.version += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, seen: int) -> int:
        """Return the current version once it differs from ``seen``."""
        while self.version == seen:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()
        return self.version
