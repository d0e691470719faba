"""The status page in a real headless Chromium (Debian's ``chromium``), driven over the
Chrome DevTools Protocol: it loads, shows the jobs of a real worker, filters, and changes a
job's badge within a few seconds of a status change, without a reload.  A screenshot of the
page is saved in the test's directory (its path is printed).

Chromium comes from Debian's package (``scripts/test`` installs it); no browser is ever
downloaded.  Without it the test is skipped, saying how to install it.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from e2e import PYTHON, Site, wait_for
from test_e2e_worker import COUNTING_JOB, SLEEPING_JOB
from test_status_http import _ping

from mirrorbus.server import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed: apt-get install -y chromium"
)


class Page:
    """The smallest DevTools client: commands over one page's WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        with anyio.fail_after(15):
            while True:
                msg = await self.ws.receive_json()
                if msg.get("id") == ident:
                    if "error" in msg:
                        raise AssertionError(f"{method}: {msg['error']}")
                    return dict(msg["result"])

    async def eval(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, timeout: float = 10, what: str = "") -> Any:
        with anyio.move_on_after(timeout):
            while True:
                value = await self.eval(expression)
                if value:
                    return value
                await anyio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what or expression}")


@contextmanager
def chromium(profile: Path) -> Iterator[int]:
    """Run headless Chromium with a fresh profile; yield its DevTools port."""
    assert CHROMIUM is not None
    profile.mkdir()
    argv = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--remote-debugging-port=0",
        "--remote-allow-origins=*",
        "--window-size=1100,800",
        "about:blank",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        text = wait_for(
            lambda: (port_file.exists() and port_file.read_text().strip()) or None,
            30,
            "Chromium's DevTools port",
        )
        yield int(text.splitlines()[0])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@asynccontextmanager
async def devtools(port: int) -> AsyncIterator[Page]:
    """A DevTools session on Chromium's first page."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
            targets = await r.json()
        page = next(t for t in targets if t["type"] == "page")
        async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            yield Page(ws)


BADGE = "document.querySelector('tr[data-name=\"{}\"] .badge')?.dataset.status || ''"


def test_page_shows_jobs_and_follows_a_status_change_live(site: Site, tmp_path: Path) -> None:
    port = free_port()
    site.worker_config(
        "w1",
        COUNTING_JOB.format(name="alpha", interval=60)
        + SLEEPING_JOB.format(name="beta", interval=60),
    )
    site._spawn(
        "manager",
        [*PYTHON, "manager", "--state-dir", str(site.root), "-v", "--http", f"127.0.0.1:{port}"],
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ping(base), 20, "the manager's HTTP server")
    site.start_worker(site.root / "w1.toml")
    site.wait_job("w1", "alpha", lambda j: j.status == "success")
    site.wait_job("w1", "beta", lambda j: j.status == "syncing")
    shot = tmp_path / "status-page.png"

    async def drive(port: int) -> None:
        async with devtools(port) as page:
            await page.send("Page.enable")
            await page.send("Page.navigate", url=base + "/")
            await page.wait(BADGE.format("alpha") + " === 'success'", what="alpha's badge")
            assert await page.eval(BADGE.format("beta")) == "syncing"
            assert await page.eval("document.title") == "Mirror status"
            cells = await page.eval(
                "[...document.querySelectorAll('tr[data-name=\"alpha\"] td')]"
                ".map(td => td.textContent)"
            )
            assert cells[0] == "alpha" and cells[4] == "1.5K"
            assert cells[5] == "https://example.org/alpha/"
            assert cells[2].endswith("seconds ago")  # last success, relative
            assert cells[3].startswith("in ")  # next run
            await page.wait("document.getElementById('live').textContent === 'live'")

            # The filter box narrows the rows; clearing it brings them back.
            set_filter = (
                "(v => {{ const f = document.getElementById('filter'); f.value = v;"
                " f.dispatchEvent(new Event('input')); }})('{}')"
            )
            await page.eval(set_filter.format("alp"))
            rows = "[...document.querySelectorAll('#rows tr')].map(tr => tr.dataset.name)"
            assert await page.eval(rows) == ["alpha"]
            await page.eval(set_filter.format(""))
            assert await page.eval(rows) == ["alpha", "beta"]

            # A status change reaches the open page by itself: no reload (the marker stays).
            await page.eval("window.__notReloaded = 42")
            stopped = await anyio.to_thread.run_sync(site.ctl, "stop", "-w", "w1", "beta")
            assert stopped.returncode == 0, stopped.stderr
            await page.wait(BADGE.format("beta") + " === 'paused'", 5, "beta's badge: paused")
            assert await page.eval("window.__notReloaded") == 42

            png = await page.send("Page.captureScreenshot", format="png")
            shot.write_bytes(base64.b64decode(png["data"]))

    with chromium(tmp_path / "chromium") as devtools_port:
        anyio.run(drive, devtools_port)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")
