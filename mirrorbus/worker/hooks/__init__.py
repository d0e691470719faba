"""Job hooks: what runs around each run and attempt of a job (docs/tunasync.md §4.1, §6).

- :mod:`.base`: the hook interface, the context hooks see, the ``exec_on_*`` hooks, and
  :func:`~.base.run_phase` (one phase over a job's hooks, in tunasync's order);
- :mod:`.zfs`, :mod:`.btrfs`, :mod:`.docker`, :mod:`.cgroup`: the system hooks;
- :mod:`.attach`: which hooks a job gets (:func:`~.attach.build_hooks`).

May import :mod:`mirrorbus.config`, :mod:`mirrorbus.worker.process` (hooks that start the job's
processes their own way set a launcher), :mod:`mirrorbus.worker.providers.base` (the job's
``TUNASYNC_*`` environment), :mod:`mirrorbus.events`, :mod:`mirrorbus.errors`,
:mod:`mirrorbus.dirs`; never the bus, the service, the manager or the projections.
"""
