"""Every configuration file of mirrorbus, read by one mechanism into frozen, typed settings.

``schema`` is the mechanism: which keys each section may hold and their TOML types, one
warning for an unknown key and one line for an error (file, section or job, key, problem),
the same in every kind of file.  On it:

* ``worker`` (with ``worker_mirrors``, ``worker_model`` and ``report``): tunasync's worker
  config, ``mirrorbus worker -c``;
* ``site``: the manager's and project's files, and where the services find their connection
  (a state directory, the file's ``[bus]``, the environment);
* ``ctl``: where the ctl finds its connection (files, environment, flags, merged);
* ``bus``: every file's ``[bus]`` section, how to reach NATS (``BusSettings``) and the
  streams' limits, without nats-py;
* ``listen`` and ``outputs``: ``HOST:PORT``, ``[http]``, ``[files]``, ``[mirrorz]``;
* ``gateway``: ``[tunasync_api]``;  ``names``: a manager replica's default name.

May import :mod:`mirrorbus.events` and :mod:`mirrorbus.errors` only: never nats-py,
SQLAlchemy, aiohttp, the manager, the worker or the projections, because the ctl, the worker
and ``--help`` read configs and must stay light.  The one reach outward is the state
directory of an embedded instance (``--state-dir``, :mod:`mirrorbus.host.instance`),
imported inside the functions given one.
Nothing is re-exported here: import the module that holds a name.
"""
