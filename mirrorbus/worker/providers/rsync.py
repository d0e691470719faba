"""The ``rsync`` and ``two-stage-rsync`` providers (docs/tunasync.md §5.2, §5.3).

Operators carry their tunasync configs over unchanged and read the rsync command line in the
job log, so the argv is built exactly as tunasync builds it: same options, same order.  The
builders are pure functions of the config (:func:`rsync_argv`, :func:`two_stage_argvs`) so
that the order can be pinned by tests without running anything.

The providers then run those argvs as one process group each (:func:`run_process`), with the
attempt log as output and ``mirror.timeout`` as the deadline of the whole attempt (both
stages of a two-stage job share it, as in tunasync where the timer wraps the provider run).

Differences from tunasync, on purpose:

- the mirror's ``env`` mapping is never written to (tunasync put ``USER``/``RSYNC_PASSWORD``
  into it, so such mirrors looked modified on every reload, §4.9);
- the size is also read when rsync prints plain byte counts with thousands separators (an
  ``rsync_override`` without ``-h``), and a locale's decimal comma (``1,24M``) is read as a
  point; tunasync reports no size in both cases;
- a failed attempt's error names the rsync exit code's meaning, and the stage that failed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence

import anyio

from mirrorbus.config.worker import MirrorConfig
from mirrorbus.config.worker_model import DEFAULT_RSYNC_TIMEOUT
from mirrorbus.worker.joblog import AttemptLog
from mirrorbus.worker.process import run_process
from mirrorbus.worker.providers.base import AttemptOutcome, read_log

__all__ = [
    "DEFAULT_OPTIONS",
    "RSYNC_EXIT_CODES",
    "STAGE1_OPTIONS",
    "STAGE1_PROFILES",
    "RsyncProvider",
    "TwoStageRsyncProvider",
    "rsync_argv",
    "rsync_environment",
    "rsync_size",
    "two_stage_argvs",
]

_TMP = ("--filter", "risk .~tmp~/", "--exclude", ".~tmp~/")
_HEAD = ("-aHvh", "--no-o", "--no-g", "--stats", *_TMP)

DEFAULT_OPTIONS: tuple[str, ...] = (
    *_HEAD,
    "--delete",
    "--delete-after",
    "--delay-updates",
    "--safe-links",
)
"""Base options of ``rsync`` jobs (unless ``rsync_override``) and of stage 2."""

STAGE1_OPTIONS: tuple[str, ...] = (*_HEAD, "--safe-links")
"""Base options of stage 1: nothing is deleted before the new indexes arrive."""

STAGE1_PROFILES: Mapping[str, tuple[str, ...]] = {
    # Debian's ftpsync RSYNC_OPTIONS1: everything but the indexes, which stage 2 brings
    # together with the deletions, so clients never see an index naming a missing file.
    "debian": (
        "--include=*.diff/",
        "--include=by-hash/",
        "--exclude=*.diff/Index",
        "--exclude=Contents*",
        "--exclude=Packages*",
        "--exclude=Sources*",
        "--exclude=Release*",
        "--exclude=InRelease",
        "--exclude=i18n/*",
        "--exclude=dep11/*",
        "--exclude=installer-*/current",
        "--exclude=ls-lR*",
    ),
    "debian-oldstyle": (
        "--exclude=Packages*",
        "--exclude=Sources*",
        "--exclude=Release*",
        "--exclude=InRelease",
        "--exclude=i18n/*",
        "--exclude=ls-lR*",
        "--exclude=dep11/*",
    ),
}

RSYNC_EXIT_CODES: Mapping[int, str] = {
    0: "Success",
    1: "Syntax or usage error",
    2: "Protocol incompatibility",
    3: "Errors selecting input/output files, dirs",
    4: "Requested action not supported: an attempt was made to manipulate 64-bit files on a "
    "platform that cannot support them; or an option was specified that is supported by the "
    "client and not by the server.",
    5: "Error starting client-server protocol",
    6: "Daemon unable to append to log-file",
    10: "Error in socket I/O",
    11: "Error in file I/O",
    12: "Error in rsync protocol data stream",
    13: "Errors with program diagnostics",
    14: "Error in IPC code",
    20: "Received SIGUSR1 or SIGINT",
    21: "Some error returned by waitpid()",
    22: "Error allocating core memory buffers",
    23: "Partial transfer due to error",
    24: "Partial transfer due to vanished source files",
    25: "The --max-delete limit stopped deletions",
    30: "Timeout in data send/receive",
    35: "Timeout waiting for daemon connection",
}
"""rsync(1) EXIT VALUES, worded as tunasync's ``internal/util.go`` table (§4.5)."""


def _tail(mirror: MirrorConfig) -> list[str]:
    """``--timeout``, the IP family and ``--exclude-from``: shared by every generated argv."""
    options: list[str] = []
    if not mirror.rsync_no_timeout:
        seconds = mirror.rsync_timeout if mirror.rsync_timeout > 0 else DEFAULT_RSYNC_TIMEOUT
        options.append(f"--timeout={seconds}")
    if mirror.use_ipv6:  # -6 wins when both are set
        options.append("-6")
    elif mirror.use_ipv4:
        options.append("-4")
    if mirror.exclude_file is not None:
        options += ["--exclude-from", str(mirror.exclude_file)]
    return options


def _argv(mirror: MirrorConfig, options: Sequence[str]) -> list[str]:
    # ``command`` of an rsync job is the binary's path, never split (§3.1).
    binary = mirror.command[0] if mirror.command and mirror.command[0] else "rsync"
    return [binary, *options, mirror.upstream, str(mirror.working_dir)]


def rsync_argv(mirror: MirrorConfig, global_rsync_options: Sequence[str]) -> list[str]:
    """The argv of an ``rsync`` job, option for option as tunasync builds it (§5.2).

    ``global_rsync_options`` is ``[global] rsync_options`` (``WorkerConfig.rsync_options``).
    The working dir is passed as loaded (normalised, without a trailing slash: rsync treats
    ``dest`` and ``dest/`` alike; it is the upstream's trailing slash that matters).

    For a job with only ``upstream = "rsync://example.org/debian/"`` the argv ends with
    ``... "--safe-links", "--timeout=120", "rsync://example.org/debian/", "/data/mirrors/debian"``.

    Raises ``ValueError`` for ``rsync_override_only`` without ``rsync_override`` (the config
    loader refuses that already; a hand-built MirrorConfig could still say it).
    """
    if mirror.rsync_override_only and not mirror.rsync_override:
        raise ValueError("rsync_override_only is set but no rsync_override provided")
    options = list(mirror.rsync_override or DEFAULT_OPTIONS)
    if not mirror.rsync_override_only:
        options += _tail(mirror)
        options += global_rsync_options
        options += mirror.rsync_options
    return _argv(mirror, options)


def two_stage_argvs(mirror: MirrorConfig) -> tuple[list[str], list[str]]:
    """The argvs of both stages of a ``two-stage-rsync`` job (§5.3).

    Stage 1 brings the packages without deleting anything and without the indexes of
    ``stage1_profile``; stage 2 is a full ``--delete-after --delay-updates`` run plus the
    mirror's ``rsync_options``.  ``rsync_override*`` and ``[global] rsync_options`` are not
    used, as in tunasync.  Raises ``ValueError`` for an unknown profile (refused at load time
    by the config loader, so only a hand-built MirrorConfig gets here).
    """
    profile = STAGE1_PROFILES.get(mirror.stage1_profile)
    if profile is None:
        raise ValueError(f"Invalid Stage 1 Profile {mirror.stage1_profile!r}")
    stage1 = [*STAGE1_OPTIONS, *profile, *_tail(mirror)]
    stage2 = [*DEFAULT_OPTIONS, *mirror.rsync_options, *_tail(mirror)]
    return _argv(mirror, stage1), _argv(mirror, stage2)


def rsync_environment(
    mirror: MirrorConfig, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Worker env (``base``, default ``os.environ``) + mirror ``env`` + credentials.

    ``USER``/``RSYNC_PASSWORD`` come last so a mirror's ``username``/``password`` win over an
    ``env`` table; no ``TUNASYNC_*`` variables are added (rsync jobs never had them).  A new
    dict every time: the mirror's mapping is left alone.
    """
    env = dict(os.environ if base is None else base)
    env.update(mirror.env)
    if mirror.username:
        env["USER"] = mirror.username
    if mirror.password:
        env["RSYNC_PASSWORD"] = mirror.password
    return env


_SIZE = re.compile(r"^Total file size: ([0-9][0-9.,]*[KMGTP]?) bytes", re.MULTILINE)


def rsync_size(log_text: str) -> str:
    """The last ``Total file size:`` of rsync ``--stats`` output, as ``-h`` prints it.

    ``-h`` gives ``1.24M`` (two decimals, units of 1000) or a plain count below 1000; a locale
    with a decimal comma gives ``1,24M``; without ``-h`` rsync prints ``1,235,801`` (or
    ``1.235.801``).  All come back in the ``-h`` form, so a status page shows one style
    whatever the options: ``"1.24M"``, ``"999"``.  ``""`` when there is no such line.
    """
    found = ""
    for match in _SIZE.finditer(log_text):
        found = match.group(1)
    if not found:
        return ""
    if found[-1] in "KMGTP":
        return found.replace(",", ".")
    return _human(int(found.replace(",", "").replace(".", "")))


def _human(count: int) -> str:
    """rsync's ``human_num`` at ``-h``: units of 1000 once the count exceeds 1000."""
    if count <= 1000:
        return str(count)
    value = float(count) / 1000
    units = iter("KMGTP")
    unit = next(units)
    while value > 1000 and unit != "P":
        value /= 1000
        unit = next(units)
    return f"{value:.2f}{unit}"


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


async def _run_stages(
    mirror: MirrorConfig, argvs: Sequence[Sequence[str]], log: AttemptLog
) -> AttemptOutcome:
    """Run ``argvs`` in order into ``log``; the first failing one ends the attempt.  The
    working dir exists: the run made it (:func:`mirrorbus.worker.run.prepare_attempt`)."""
    env = rsync_environment(mirror)
    limit = None if mirror.timeout is None else mirror.timeout.total_seconds()
    deadline = None if limit is None else anyio.current_time() + limit
    staged = len(argvs) > 1
    code: int | None = None
    with log.path.open("ab", buffering=0) as output:  # stage 2 appends to stage 1's output
        for stage, argv in enumerate(argvs, 1):
            remaining = None if deadline is None else max(deadline - anyio.current_time(), 0.0)
            result = await run_process(
                argv,
                cwd=mirror.working_dir,
                env=env,
                output=output,
                timeout=remaining,
                header=True,
            )
            code = result.exit_code
            if result.timed_out:
                # run_process names the time left for this stage; the user set the whole.
                error = f"timeout after {_duration(limit or 0.0)}"
            elif code == 0 or (code is not None and code in mirror.success_exit_codes):
                continue
            else:
                error = result.error
                meaning = RSYNC_EXIT_CODES.get(code) if code else None
                if meaning is not None:
                    output.write(f"rsync error: {meaning}\n".encode())
                    error = f"{error}: {meaning}"
            if staged:
                error = f"stage {stage}: {error}"
            return AttemptOutcome(ok=False, exit_code=code, error=error)
    text = await anyio.to_thread.run_sync(read_log, log.path)
    return AttemptOutcome(ok=True, exit_code=code, size=rsync_size(text))


class RsyncProvider:
    """One ``rsync`` run per attempt; success is exit 0 or a code in ``success_exit_codes``
    (which the loader already merged with the ``rsync_success_exit_codes`` lists)."""

    def __init__(self, mirror: MirrorConfig, global_rsync_options: Sequence[str] = ()) -> None:
        self.mirror = mirror
        self.global_rsync_options = tuple(global_rsync_options)

    def argv(self) -> list[str]:
        return rsync_argv(self.mirror, self.global_rsync_options)

    async def run_attempt(self, log: AttemptLog) -> AttemptOutcome:
        try:
            argv = self.argv()
        except ValueError as exc:
            return AttemptOutcome(ok=False, exit_code=None, error=str(exc))
        return await _run_stages(self.mirror, [argv], log)


class TwoStageRsyncProvider:
    """Stage 1 (packages, no deletions), then stage 2 (indexes and deletions), one attempt.

    Both stages write to the attempt's log, the size is stage 2's ``Total file size``; a
    failed stage 1 skips stage 2, so a half-fetched pool never gets new indexes.
    """

    def __init__(self, mirror: MirrorConfig) -> None:
        self.mirror = mirror

    def argvs(self) -> tuple[list[str], list[str]]:
        return two_stage_argvs(self.mirror)

    async def run_attempt(self, log: AttemptLog) -> AttemptOutcome:
        try:
            argvs = self.argvs()
        except ValueError as exc:
            return AttemptOutcome(ok=False, exit_code=None, error=str(exc))
        return await _run_stages(self.mirror, argvs, log)
