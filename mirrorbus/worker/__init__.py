"""The worker: loads a tunasync worker config, runs jobs, records their events, obeys commands.

:mod:`.service` is the worker itself; a job (:mod:`.job`) runs (:mod:`.run`) through its
provider (:mod:`.providers`) and hooks (:mod:`.hooks`), its processes started by
:mod:`.process`; every event goes through the outbox (:mod:`.outbox`), and at start the job
states come back from the log (:mod:`.restore`).

May import :mod:`mirrorbus.bus`, :mod:`mirrorbus.events`, :mod:`mirrorbus.config`,
:mod:`mirrorbus.errors`, :mod:`mirrorbus.clock` and :mod:`mirrorbus.dirs`; never the manager,
the projections or the gateway (the worker must not load the SQL or HTTP stacks).

The names below are loaded on first use, so that importing one module of the package (a wire
type) does not import the whole worker.  Its config file is read by :mod:`mirrorbus.config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mirrorbus.lazy import lazy

if TYPE_CHECKING:
    from mirrorbus.worker.service import Worker

__all__ = ["Worker"]

_WHERE = {"Worker": "mirrorbus.worker.service"}

__getattr__ = lazy(__name__, _WHERE)
