"""PostgreSQL stopped and restarted under a running manager: no event is acknowledged before
it is committed, so every event reaches the view once the database is back, none twice.

The test runs its own PostgreSQL cluster (Debian's binaries, as the `postgres` user, in a
temporary directory, on a free loopback port), so stopping it disturbs nothing else."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import PYTHON, Site, count_lines, wait_for
from test_e2e_worker import COUNTING_JOB

from mirrorbus.host.server import free_port
from projections.status_view import StatusView

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


class Postgres:
    def __init__(self, root: Path) -> None:
        assert BIN is not None
        self.root = root
        self.dir = root / "pg"
        self.dir.mkdir()
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self._as_postgres(
            [str(BIN / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres"]
        )

    def _as_postgres(self, argv: list[str]) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv],
            check=True,
            capture_output=True,
            timeout=120,
            cwd="/",
        )

    def start(self) -> None:
        self._as_postgres(
            [
                str(BIN / "pg_ctl"),
                "-D",
                str(self.dir),
                "-w",
                "-l",
                str(self.dir / "log"),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                "start",
            ]
        )

    def stop(self) -> None:
        self._as_postgres([str(BIN / "pg_ctl"), "-D", str(self.dir), "-w", "-m", "fast", "stop"])

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if BIN is None or shutil.which("runuser") is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's binaries are missing: scripts/test installs them")
        pytest.skip("PostgreSQL's server binaries are not installed")
    # Not under pytest's tmp_path: that is 0700 root's, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="mirrorbus-pg-"))
    root.chmod(0o755)
    pg = Postgres(root)
    pg.start()
    try:
        import psycopg

        with psycopg.connect(pg.url("postgres").replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE DATABASE view")
        yield pg
    finally:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(BIN / "pg_ctl"),
                "-D",
                str(pg.dir),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            timeout=60,
            cwd="/",
        )
        shutil.rmtree(root, ignore_errors=True)


def test_postgres_restarted_under_the_manager(
    site: Site, postgres: Postgres, tmp_path: Path
) -> None:
    pki = site.root / "pki"
    manager_toml = tmp_path / "manager.toml"
    manager_toml.write_text(
        f'[bus]\nurl = "tls://127.0.0.1:{site.port}"\nca_cert = "{pki / "ca.crt"}"\n'
        f'cert = "{pki / "manager.crt"}"\nkey = "{pki / "manager.key"}"\n'
        f'[database]\nurl = "{postgres.url("view")}"\n'
    )
    site._spawn("manager", [*PYTHON, "manager", "-c", str(manager_toml), "-v"])
    config = site.worker_config("w1", COUNTING_JOB.format(name="tick", interval=0.01))
    runs = site.workdir("w1", "tick") / "runs"
    site.start_worker(config, key="worker")
    view = StatusView(postgres.url("view"))
    try:
        wait_for(lambda: len(view.history("w1", "tick")) >= 2, 30, "runs in the PG view")

        postgres.stop()
        during = count_lines(runs)
        wait_for(lambda: count_lines(runs) >= during + 4, 30, "runs while PostgreSQL is down")
        wait_for(lambda: "cannot be written" in site.output("manager"), 30, "the manager to notice")
        postgres.start()

        assert site.stop("worker") == 0
        total = count_lines(runs)
        wait_for(
            lambda: len(view.history("w1", "tick", limit=10_000)) == total,
            60,
            "every run in the view after the restart",
        )
        history = view.history("w1", "tick", limit=10_000)
        assert len({r.run_id for r in history}) == total
        assert site.procs["manager"].poll() is None  # and kept going

        last = wait_for(lambda: (p := view.position()) and p, what="a position")
        rebuilt = tmp_path / "rebuilt.db"
        out = site.cli(
            "manager", "rebuild", "-c", str(manager_toml), "--into", f"sqlite:///{rebuilt}"
        )
        assert out.returncode == 0, out.stderr
        other = StatusView(f"sqlite:///{rebuilt}")
        try:
            wait_for(lambda: view.position() == other.position(), 30, "the same position")
            assert other.dump() == view.dump()
            assert other.position() >= last
        finally:
            other.close()
    finally:
        view.close()
