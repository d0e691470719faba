"""The status page in a real headless Chromium (Debian's ``chromium``), driven over the
Chrome DevTools Protocol: it loads, shows the jobs of a real worker, filters, and changes a
job's badge within a few seconds of a status change, without a reload.  A screenshot of the
page is saved in the test's directory (its path is printed).

Chromium comes from Debian's package (``scripts/test`` installs it); no browser is ever
downloaded.  Without it the test is skipped, saying how to install it.
"""

from __future__ import annotations

import base64
import json
import os
import re
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

from mirrorbus.host.server import free_port

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
def chromium(profile: Path, size: str = "1100,800") -> Iterator[int]:
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
        f"--window-size={size}",
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
            assert cells[0] == "alpha" and cells[5] == "1.5K"
            assert cells[6] == "https://example.org/alpha/"
            assert cells[2] == "✓"  # the strip of recent runs: one success
            assert re.fullmatch(r"\d+ seconds? ago", cells[3])  # last success, relative
            assert cells[4].startswith("in ")  # next run
            beta_next = "document.querySelector('tr[data-name=\"beta\"] td.next').textContent"
            assert (await page.eval(beta_next)).startswith("syncing since ")  # not a past run
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


ODD = 'x.<i>y<i> & "z"'
"""A job name as tunasync allows it: dots, HTML and quotes, shown as text everywhere."""
FLAKY = (
    """
[[mirrors]]
name = '''{name}'''
provider = "command"
upstream = "https://example.org/<img src=x onerror=window.__xss=1>/"
desc = "<b>not bold</b>"
interval = 0.01
size_pattern = "Total size is ([0-9\\\\.]+[KMGTP]?)"
"""
    # Fails its first run, then succeeds with a size growing by 1K a run.
    "command = '''/bin/sh -c 'n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; "
    """[ "$n" -ge 1 ] || exit 3; echo "Total size is ${{n}}K"' '''\n"""
)
BROKEN = """
[[mirrors]]
name = "broken"
provider = "command"
upstream = "rsync://example.org/broken/"
interval = 60
command = '''/bin/sh -c 'echo "@ERROR: max connections reached"; exit 5' '''
"""
SCREENSHOTS_ENV = "MIRRORBUS_SCREENSHOTS"
"""A directory to copy the two screenshots into (the README's are made this way)."""


def test_history_detail_workers_and_phone_width(site: Site, tmp_path: Path) -> None:
    """The strip of last runs (with what a hover shows), the detail view (history table and
    the two charts), workers going offline live, names and texts with HTML shown as text, and
    the same page at a phone's width: cards, no sideways scrolling.  Screenshots at both."""
    port = free_port()
    site.worker_config(
        "w1",
        FLAKY.format(name=ODD)
        + COUNTING_JOB.format(name="alpha", interval=60)
        + SLEEPING_JOB.format(name="beta", interval=60)
        + BROKEN,
        retry=1,
    )
    site._spawn(
        "manager",
        [*PYTHON, "manager", "--state-dir", str(site.root), "-v", "--http", f"127.0.0.1:{port}"],
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _ping(base), 20, "the manager's HTTP server")
    site.start_worker(site.root / "w1.toml", key="worker")
    wait_for(lambda: len(site.view.history("w1", ODD, 10)) >= 5, 60, "five runs of the flaky job")
    site.wait_job("w1", "alpha", lambda j: j.status == "success")
    site.wait_job("w1", "broken", lambda j: j.status == "failed")
    site.wait_job("w1", "beta", lambda j: j.status == "syncing")
    shots = {name: tmp_path / f"status-{name}.png" for name in ("desktop", "detail", "phone")}
    rows = "[...document.querySelectorAll('#rows tr')]"
    row = f"{rows}.find(tr => tr.dataset.name === {json.dumps(ODD)})"

    async def desktop(port: int) -> None:
        async with devtools(port) as page:
            await page.send("Page.enable")
            await page.send("Page.navigate", url=base + "/")
            await page.wait(f"{row}?.querySelectorAll('.strip li').length >= 5", what="the strip")
            # Escaped, not interpreted: the name, upstream and description are text.
            assert await page.eval(f"{row}.querySelector('td.name button').textContent") == ODD
            assert await page.eval("document.querySelectorAll('#rows i, #rows img').length") == 0
            # The strip: oldest first, the first run failed, every mark a symbol and a text.
            marks = await page.eval(
                f"[...{row}.querySelectorAll('.strip li')].map(li => [li.className,"
                " li.textContent, li.title, li.getAttribute('aria-label')])"
            )
            assert all(m[2] == m[3] and m[2].startswith("started ") for m in marks)
            assert all(
                {"success": "✓", "failed": "✗"}[m[0]] == m[1] for m in marks if m[0] != "running"
            )
            history = site.view.history("w1", ODD, 100)
            if len(history) <= 12:  # the very first run is still in the strip
                assert marks[0][0] == "failed" and "error: exit status 3" in marks[0][2]
            assert " · took " in marks[1][2] and " · success · size " in marks[1][2]
            # Workers: online, said in words.
            worker = "document.querySelector('#workerList li[data-worker=\"w1\"]')"
            assert (await page.eval(f"{worker}.querySelector('.state').textContent")) == "online"
            png = await page.send("Page.captureScreenshot", format="png")
            shots["desktop"].write_bytes(base64.b64decode(png["data"]))

            # The detail view: the history table and the two charts, from the job's button.
            await page.eval(f"{row}.querySelector('td.name button').click()")
            await page.wait("document.querySelectorAll('#detailRows tr').length >= 5")
            assert await page.eval("document.getElementById('detail').hidden") is False
            title = await page.eval("document.getElementById('detailTitle').textContent")
            assert title == f"{ODD} on w1"
            facts = await page.eval("document.getElementById('detailFacts').textContent")
            assert "<b>not bold</b>" in facts  # as text
            results = await page.eval(
                "[...document.querySelectorAll('#detailRows tr')].map(tr => tr.dataset.result)"
            )
            assert results[-1] in ("failed", "success") and "success" in results
            dots = await page.eval("document.querySelectorAll('#chartDuration circle').length")
            assert dots >= 4
            sizes = await page.eval("document.querySelectorAll('#chartSize circle').length")
            assert sizes >= 3
            label = await page.eval(
                "document.getElementById('chartSize').getAttribute('aria-label')"
            )
            assert label.startswith("Size of the last ") and "KiB" in label
            assert (await page.eval("location.hash")).startswith("#job=w1/")
            png = await page.send("Page.captureScreenshot", format="png")
            shots["detail"].write_bytes(base64.b64decode(png["data"]))
            await page.eval("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
            await page.wait("document.getElementById('detail').hidden", what="Escape to close")

            # A worker that stops shows offline on the open page.
            await anyio.to_thread.run_sync(site.stop, "worker")
            await page.wait(f"{worker}.querySelector('.state').textContent === 'offline'", 10)
            assert await page.eval("window.__xss") is None

    async def phone(port: int) -> None:
        async with devtools(port) as page:
            await page.send(
                "Emulation.setDeviceMetricsOverride",
                width=390,
                height=844,
                deviceScaleFactor=2,
                mobile=True,
            )
            await page.send("Page.enable")
            await page.send("Page.navigate", url=base + "/")
            await page.wait(f"{row}?.querySelectorAll('.strip li').length >= 5", what="the strip")
            assert (
                await page.eval("getComputedStyle(document.querySelector('#jobs thead')).display")
                == "none"
            )
            wide = "document.documentElement.scrollWidth - window.innerWidth"
            assert await page.eval(wide) <= 0, "the page scrolls sideways on a phone"
            label = await page.eval(
                f"getComputedStyle({row}.querySelector('td.runs'), '::before').content"
            )
            assert "Recent runs" in label
            png = await page.send("Page.captureScreenshot", format="png")
            shots["phone"].write_bytes(base64.b64decode(png["data"]))

    with chromium(tmp_path / "chromium-phone", "390,844") as devtools_port:
        anyio.run(phone, devtools_port)
    with chromium(tmp_path / "chromium") as devtools_port:
        anyio.run(desktop, devtools_port)  # last: it stops the worker
    for shot in shots.values():
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot: {shot}")
    if target := os.environ.get(SCREENSHOTS_ENV):
        for name, shot in shots.items():
            shutil.copyfile(shot, Path(target) / f"status-page-{name}.png")
