"""Fault drills across network namespaces: every program on a host of its own, and the
network between the hosts broken on purpose.

* :mod:`netdrills.hosts` makes the hosts (Linux network namespaces on a bridge that lives in a
  namespace of its own; addresses from 198.18.0.0/15) and breaks and heals the links between
  them; everything it makes is undone by :meth:`~netdrills.hosts.Net.close`, also on an error
  or Ctrl-C.
* :mod:`netdrills.fleet` puts a three-node nats-server cluster, the manager and two workers on
  those hosts, configured the way an operator would (certificates naming the hosts' addresses,
  ``[bus]`` sections, ``mirrorbus manager -c``, ``mirrorbus worker -c``, ``mirrorbus ctl -c``).
* :mod:`netdrills.drills` runs the six drills and counts exactly; ``python -m netdrills`` (what
  ``scripts/drills`` calls) prints their table.

Needs root and iproute2; the loss drill also needs iptables (``statistic`` match).  The
harness never adds anything to the machine's own network namespace.
"""
