"""Open a local HTML file in headless Chromium and report what the browser saw.

The browser is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``),
so no port is opened. Background networking, DNS and every non-local request are disabled:
the page is a self-contained file and must render with nothing reachable.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")

FLAGS = (
    "--headless=new",
    "--remote-debugging-pipe",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1280,2000",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary on PATH, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageVisit:
    """What the browser reported for one page."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    screenshot: bytes = b""


class _Pipe:
    """DevTools messages over the two pipe ends Chromium reads (fd 3) and writes (fd 4)."""

    def __init__(self, binary: str, profile: str):
        to_browser_read, self._write = os.pipe()
        self._read, from_browser_write = os.pipe()

        def wire():
            # Move both ends above 4 first, so that neither dup2 overwrites the other's source.
            high_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            high_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire,
            close_fds=False,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe; it may have crashed at start.")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        request_id = self.send(method, params, session)
        while True:
            message = self._receive()
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method} failed: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        """Read events until one named ``method`` arrives.

        The reads block, so the deadline is checked only between messages.
        """
        deadline = time.monotonic() + timeout
        while not any(event["method"] == method for event in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"DevTools event {method} did not arrive within {timeout} s")
            message = self._receive()
            if "method" in message:
                self.events.append(message)

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._write)
            os.close(self._read)


IMAGES_JS = "Array.from(document.images).map(i => ({src: i.src.slice(0, 40), complete: i.complete, naturalWidth: i.naturalWidth}))"


def visit(binary: str, page: Path, timeout: float = 60.0, max_height: int = 3000) -> PageVisit:
    """Load ``page`` (a local file) and collect console errors, requests, image sizes and a screenshot.

    The screenshot covers the top ``max_height`` CSS pixels of the page at 1280 pixels wide.
    """
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        pipe = _Pipe(binary, profile)
        try:
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                pipe.call(f"{domain}.enable", session=session)
            pipe.events.clear()
            pipe.call("Page.navigate", {"url": page.as_uri()}, session=session)
            pipe.wait_for("Page.loadEventFired", timeout)
            images = pipe.call(
                "Runtime.evaluate", {"expression": IMAGES_JS, "returnByValue": True}, session=session
            )["result"]["value"]
            metrics = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": 1280, "height": min(metrics["height"], max_height), "scale": 1}
            shot = pipe.call(
                "Page.captureScreenshot",
                {"format": "png", "clip": clip, "captureBeyondViewport": True},
                session=session,
            )
            result = PageVisit(images=images, screenshot=base64.b64decode(shot["data"]))
            for event in pipe.events:
                method, params = event["method"], event.get("params", {})
                if method == "Runtime.exceptionThrown":
                    result.console_errors.append(params["exceptionDetails"].get("text", "exception"))
                elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    result.console_errors.append(str(params.get("args")))
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    result.console_errors.append(params["entry"].get("text", ""))
                elif method == "Network.requestWillBeSent":
                    result.requests.append(params["request"]["url"][:80])
            return result
        finally:
            pipe.close()
