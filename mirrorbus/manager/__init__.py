"""The manager: the projection runner and the query service over the status view.

The names below are loaded on first use, so that importing one module of the package does not
import the view, SQLAlchemy or the HTTP server.  The query protocol the manager answers is a
wire contract beside the events (:mod:`mirrorbus.events.wire`), so the client imports no part
of the manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorbus.lazy import lazy

if TYPE_CHECKING:
    from mirrorbus.manager.projector import Projector, catch_up
    from mirrorbus.manager.queries import QueryService
    from mirrorbus.manager.service import Manager

__all__ = ["Manager", "Projector", "QueryService", "catch_up"]

_WHERE = {
    "Manager": "mirrorbus.manager.service",
    "Projector": "mirrorbus.manager.projector",
    "QueryService": "mirrorbus.manager.queries",
    "catch_up": "mirrorbus.manager.projector",
}

__getattr__ = lazy(__name__, _WHERE)
