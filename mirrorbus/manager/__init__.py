"""The manager: the projection runner and the query service over the status view."""

from mirrorbus.manager.projector import Projector, catch_up
from mirrorbus.manager.queries import QueryService
from mirrorbus.manager.service import Manager

__all__ = ["Manager", "Projector", "QueryService", "catch_up"]
