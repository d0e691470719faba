"""Running NATS on one host: what ``mirrorbus certs`` and ``mirrorbus up`` are made of.

- ``pki``: the CA and the certificates whose subjects are the bus's users.
- ``natsconf``: the nats-server config that maps those certificates to their permissions.
- ``server``: one nats-server child process (find the binary, start, reload, stop).
- ``cluster``: the three loopback nodes of ``up --cluster``.
- ``instance``: the state directory of ``up`` and how a client finds it.
- ``supervisor``: ``mirrorbus up`` itself, which runs nats-server, the manager and the worker
  as supervised processes.

What it may import: ``mirrorbus.config``, ``mirrorbus.events``, ``mirrorbus.errors`` and the
small helpers beside them (``dirs``); never nats-py, SQL or HTTP, because these modules set up
the server before there is a bus to talk to.  The supervisor starts the manager and the worker
as processes only and never imports their services, so that it stays small and one of them
dying cannot take it down (tests/test_imports.py checks what it loads).

Nothing is imported here on purpose: ``mirrorbus certs`` loads only ``pki`` and ``natsconf``,
``mirrorbus up`` only what the supervisor needs.
"""
