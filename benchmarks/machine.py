"""The machine a run happened on, for the results table."""

from __future__ import annotations

import os
import platform
import subprocess

from mirrorbus.host.server import find_nats_server


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _nats_version() -> str:
    try:
        out = subprocess.run(
            [str(find_nats_server()), "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or out.stderr.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe() -> str:
    return (
        f"nproc {os.cpu_count()}, {_cpu_model()}, {_memory()} RAM, "
        f"Python {platform.python_version()}, {_nats_version()}, {platform.platform()}"
    )
