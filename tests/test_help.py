"""Every command's ``--help`` shows its option texts as written.

Help is plain click text (no rich markup), so a config section named in an option's help,
``[tunasync_api] listen`` or ``[bus]``, must reach the reader as it is: not eaten as a markup
tag, not shown with an escaping backslash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from mirrorbus.cli import app

SECTION = re.compile(r"\[[a-z_]+\]")


def commands() -> Iterator[tuple[list[str], Any]]:
    """(argv to the command, the command) of every command and group, lazy ones included."""
    root = typer.main.get_command(app)
    stack: list[tuple[list[str], Any]] = [([], root)]
    while stack:
        path, command = stack.pop()
        yield path, command
        if hasattr(command, "list_commands"):  # a group
            ctx = command.context_class(command)
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None:
                    stack.append(([*path, name], sub))


def test_sections_named_in_help_are_shown_as_written() -> None:
    runner = CliRunner()
    checked = 0
    for path, command in commands():
        named = {s for p in command.params for s in SECTION.findall(getattr(p, "help", "") or "")}
        if not named:
            continue
        shown = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert shown.exit_code == 0, (path, shown.output)
        assert "\\[" not in shown.output, (path, shown.output)
        for section in named:
            assert section in shown.output, (path, section, shown.output)
        checked += 1
    assert checked >= 3  # manager, import tunasync, up at least name sections
