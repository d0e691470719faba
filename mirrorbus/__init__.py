"""mirrorbus: mirror-sync jobs as an event-sourced system on NATS JetStream with mutual TLS.

Dependencies point one way (each folder's ``__init__`` says what it may import; the tests
``test_layout`` and ``test_layering`` check it from the source)::

    errors, clock, dirs, lazy  small helpers everyone may use
    events/            the domain: schemas, codec, subjects, evolve(), wire types (no NATS, SQL)
    config/            every config file into frozen settings (no NATS, no SQL)
    bus/               the NATS edge: the only importer of nats-py
    projections/       read models folded from events (the SQL view, tunasync JSON, mirrorz)
    control            the client library, on bus/ and events/ only
    worker/ manager/   the two services, meeting only through the bus; the manager owns the view
    gateway/           tunasync's manager API, on control and the bus
    host/              running NATS on one host (certificates, nats.conf, server, ``up``)
    cli/               the command line, at the very edge: imports anything, lazily
"""

__version__ = "0.1.0"
