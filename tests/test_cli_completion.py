"""Shell completion still works with sub-commands loaded on use (``mirrorbus --install-completion``
installs a script that calls the program with ``_MIRRORBUS_COMPLETE`` set; this is that call)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # every test here starts the CLI

# The console script: completion keys on the program's name (``_MIRRORBUS_COMPLETE``).
MIRRORBUS = str(Path(sys.executable).parent / "mirrorbus")


def complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "_MIRRORBUS_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    done = subprocess.run(
        [MIRRORBUS],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_top_level_commands_complete_without_importing_them_first() -> None:
    assert complete("mirrorbus ct") == ["ctl"]
    assert set(complete("mirrorbus m")) == {"manager"}


def test_a_lazily_loaded_group_completes_its_verbs() -> None:
    assert {"start", "stop"} <= set(complete("mirrorbus ctl st"))
    assert "list" not in complete("mirrorbus ctl st")
    assert "rebuild" in complete("mirrorbus manager r")


def test_the_completion_script_is_offered() -> None:
    done = subprocess.run(
        [MIRRORBUS, "--show-completion", "bash"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "_MIRRORBUS_COMPLETE=complete_bash" in done.stdout
