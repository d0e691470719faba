"""The gateway: tunasync's manager API in front of the bus, run beside the manager.

It connects with its own certificate (role ``gateway``), knows which workers are old
tunasync ones (:class:`~mirrorbus.gateway.fleet.Fleet`), forwards their commands
(:class:`~mirrorbus.gateway.relay.Relay`) and serves the HTTP API
(:class:`~mirrorbus.gateway.api.TunasyncApi`) from the manager's status view (``changes``:
the manager's projector says when the view moved).  The streams must exist (the manager
makes them) before it starts.
"""

from __future__ import annotations

import anyio
from anyio.abc import TaskStatus

from mirrorbus.bus import Bus
from mirrorbus.clock import Clock
from mirrorbus.config.gateway import GatewaySettings
from mirrorbus.gateway.api import CMD_WAIT, TunasyncApi
from mirrorbus.gateway.fleet import Fleet
from mirrorbus.gateway.relay import POST_TIMEOUT, Relay
from projections.changes import Changes
from projections.status_view import StatusView


class Gateway:
    def __init__(
        self,
        bus: Bus,
        view: StatusView,
        changes: Changes,
        settings: GatewaySettings,
        *,
        clock: Clock | None = None,
        post_timeout: float = POST_TIMEOUT,
        cmd_wait: float = CMD_WAIT,
        maker: Bus | None = None,
    ) -> None:
        """``maker``: the manager's connection, which makes the gateway's command consumer
        (the gateway's own user may not make consumers)."""
        self.fleet = Fleet(bus, view, changes)
        self.relay = Relay(
            self.fleet,
            ca_cert=settings.ca_cert,
            clock=clock,
            post_timeout=post_timeout,
            maker=maker,
        )
        self.api = TunasyncApi(self.fleet, view, settings, clock=clock, cmd_wait=cmd_wait)

    @property
    def url(self) -> str:
        return self.api.url

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await self.fleet.catch_up()
        async with anyio.create_task_group() as tg:
            await tg.start(self.relay.run)
            await tg.start(self.api.run)
            task_status.started()
