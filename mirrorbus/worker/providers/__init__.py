"""Providers: how one attempt of a job is executed and judged.

- :mod:`.base`: the attempt's outcome, the provider protocol, tunasync's job environment;
- :mod:`.command`: the ``command`` provider;
- :mod:`.rsync`: the ``rsync`` and ``two-stage-rsync`` providers;
- :mod:`.choose`: which of them runs a job (:func:`~.choose.make_provider`).

The providers start their processes with :mod:`mirrorbus.worker.process` (shared with the exec
hooks, so it stays beside the run) and write to the attempt's log (:mod:`mirrorbus.worker.joblog`).

May import :mod:`mirrorbus.config`, the worker's ``process`` and ``joblog`` modules,
:mod:`mirrorbus.events` and :mod:`mirrorbus.errors`; never the bus, the hooks, the service, the
manager or the projections.
"""
