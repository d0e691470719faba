"""Directories made with an explicit mode, whatever the process's umask.

``Path.mkdir(mode=...)`` is narrowed by the umask, and with ``parents=True`` the parents it
makes get the default mode (0777 under ``umask 000``): a mirror's working directory or a job's
log directory must not become writable by everyone because of how the service was started.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["make_dirs"]


def make_dirs(path: Path, mode: int = 0o755) -> None:
    """Make ``path`` and its missing parents, each with exactly ``mode`` (a directory that
    exists already is left as it is)."""
    missing: list[Path] = []
    current = Path(path)
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    if not missing and not current.is_dir():
        os.mkdir(current, mode)  # raises what mkdir says of a file in the way
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)  # under a file: "Not a directory", as mkdir -p says
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # made meanwhile by someone else: theirs to keep
        os.chmod(directory, mode)  # the umask may have narrowed or widened nothing else
