"""mirrorbus: mirror-sync jobs as an event-sourced system on NATS JetStream with mutual TLS.

Dependencies point one way::

    events/            domain: schemas, codec, subjects, evolve()     (no NATS, no SQL)
    projections/       read models folded from events (SQL view, tunasync JSON)
    worker/ manager/   the two services, on top of events/ and projections/
    bus, pki, server, cli, supervisor     adapters at the edge (NATS, certificates, processes)
"""

__version__ = "0.1.0"
