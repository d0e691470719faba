"""``mirrorbus ctl`` (also ``mirrorbusctl``): the operator's command line over the bus.

- :mod:`.app`: the app, its global options, and the list of its commands;
- :mod:`.verbs`: tunasynctl's verbs and the queries (``list``, ``start``, ``logs``, ``status``...);
- :mod:`.watch`: ``watch`` and ``events``, built on :mod:`.live` (reading the event log as it
  grows, folding it into a table);
- :mod:`.base`: what the commands share (options, the connection, formatting);
- :mod:`.position`: read your own writes across ``ctl`` runs.

The commands import :mod:`mirrorbus.control`, :mod:`mirrorbus.bus` and rich where they run,
not at load time, so that ``mirrorbus ctl --help`` imports no nats-py (tests/test_imports.py).
This ``__init__`` imports nothing: the CLI loads :mod:`.app` when ``ctl`` is asked for.

May import :mod:`mirrorbus.control`, :mod:`mirrorbus.bus`, :mod:`mirrorbus.events`,
:mod:`mirrorbus.config`, :mod:`mirrorbus.errors`, the CLI's own helpers and the projections'
tunasync shapes (``list --json``); never the services (manager, worker, gateway).
"""
