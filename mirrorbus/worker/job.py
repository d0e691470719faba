"""A job of the worker: its configuration, provider and hooks, its state, and its current run.

Its own module so that the parts that act on one job (the run, the commands) need not import
the worker's service, which imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from mirrorbus.config.worker import MirrorConfig
from mirrorbus.events import JobState
from mirrorbus.worker.hooks.base import Hook
from mirrorbus.worker.providers.base import Provider

KILLED = "killed by manager"  # tunasync's text, kept: scripts and pages match on it
"""Why a run ends when a command (stop, disable, restart) or a reload cancels it."""


@dataclass(eq=False)
class Job:
    mirror: MirrorConfig
    provider: Provider
    state: JobState
    scope: anyio.CancelScope | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    kill_reason: str = KILLED
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    hooks: list[Hook] = field(default_factory=list)
    started: bool = False  # the current run holds its slot and has emitted RunStarted
    subject: str = ""  # where its events go (made once: names are checked on the way)

    @property
    def name(self) -> str:
        return self.mirror.name

    @property
    def running(self) -> bool:
        """A run exists (executing, or waiting for a concurrency slot)."""
        return self.scope is not None
