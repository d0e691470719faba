"""Throughput, latency and scale of mirrorbus, each against the raw stack in the same run.

``python -m benchmarks [--quick]`` starts its own nats-server with mutual TLS (free loopback
port, temporary directory, a real PKI), runs the scenarios and prints one table.  Not part
of the test run: the numbers depend on the machine, so every figure comes with a baseline
measured in the same run, and targets are ratios.

Modules: ``harness`` (server, clients, event generation, the table), one module per
scenario (``ingest``, ``append``, ``latency``, ``scheduler``, ``restore``, ``footprint``),
``plot`` (cost vs number of jobs) and ``machine``.
"""
