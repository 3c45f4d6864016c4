"""Open a local HTML file in headless Chromium and report what the page did.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe``:
the browser reads JSON commands from its fd 3 and writes replies and events to
its fd 4, each message terminated by a NUL byte. Every wait has a deadline, so a
stuck browser fails the caller within ``timeout`` seconds instead of hanging, and
the browser's whole process group is killed on the way out.

The screenshot is decoded here (zlib + numpy, no imaging library): Chromium
writes 8-bit RGB or RGBA PNGs without interlacing.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Rectangles of every plot, in page (CSS pixel) coordinates, plus the figure's id.
_PLOT_RECTS_JS = """JSON.stringify([...document.querySelectorAll('figure.plot svg')].map(svg => {
  const r = svg.getBoundingClientRect();
  return {id: svg.closest('figure').id, x: r.left + window.scrollX, y: r.top + window.scrollY,
          width: r.width, height: r.height};
}))"""
_PAGE_HEIGHT_JS = "Math.ceil(Math.max(document.documentElement.scrollHeight, document.body.scrollHeight))"


class BrowserError(RuntimeError):
    """Chromium failed, answered with an error, or did not answer in time."""


class PageCapture(NamedTuple):
    png: bytes  # the full-page screenshot as Chromium encoded it
    pixels: np.ndarray  # (height, width, 3) uint8 RGB, decoded from ``png``
    requests: list[str]  # the URL of every request the page sent, in order
    plots: list[dict[str, Any]]  # {"id", "x", "y", "width", "height"} of each `figure.plot svg`


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable on PATH, or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


# --------------------------------------------------------------------------- PNG


def _unfilter_left_dependent(line: np.ndarray, prev: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """Undo the Average (3) or Paeth (4) filter of one row, byte by byte.

    Both predict from the decoded byte to the left, so this is sequential and slow
    (about a millisecond a row); the screenshots asked for with ``optimizeForSpeed``
    use the Up filter only, and other encoders use these filters on a few rows.
    """
    out = bytearray(line.tobytes())
    up = prev.tobytes()
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            pred = (a + b) >> 1
        else:
            c = up[i - bpp] if i >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out[i] = (out[i] + pred) & 0xFF
    return np.frombuffer(bytes(out), np.uint8)


def decode_png(data: bytes) -> np.ndarray:
    """(height, width, channels) uint8 pixels of an 8-bit RGB/RGBA, non-interlaced PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ValueError("truncated PNG chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ValueError("PNG without IHDR or IDAT")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace != 0:
        raise ValueError(f"unsupported PNG: bit depth {depth}, colour type {colour}, interlace {interlace}")
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    if raw.size != height * (stride + 1):
        raise ValueError("PNG image data has the wrong size")
    rows = raw.reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        if kind == 0:
            out[y] = line
        elif kind == 1:  # Sub: running sum along the row, per channel, mod 256
            out[y] = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:  # Up
            out[y] = line + prev
        elif kind in (3, 4):
            out[y] = _unfilter_left_dependent(line, prev, bpp, kind)
        else:
            raise ValueError(f"bad PNG filter type {kind} in row {y}")
        prev = out[y]
    return out.reshape(height, width, bpp)


# ---------------------------------------------------------------------- DevTools


def _pipe_above(lowest: int) -> tuple[int, int]:
    """A pipe whose fds are numbered ``lowest`` or more (so never 3 or 4 themselves)."""
    ends = os.pipe()
    try:
        return tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest) for fd in ends)  # type: ignore[return-value]
    finally:
        for fd in ends:
            os.close(fd)


class _DevTools:
    """One Chromium process and its DevTools pipe."""

    def __init__(self, executable: str, deadline: float) -> None:
        self.deadline = deadline
        self.events: list[dict[str, Any]] = []
        self._next_id = 0
        self._buffer = b""
        self._tmp = tempfile.TemporaryDirectory(prefix="tz-chromium-")
        self._log = open(Path(self._tmp.name) / "stderr.log", "wb")  # noqa: SIM115 - closed in close()
        to_browser_r, self._to_browser = _pipe_above(10)
        self._from_browser, from_browser_w = _pipe_above(10)
        args = [
            executable,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={Path(self._tmp.name) / 'profile'}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--mute-audio",
            "--force-color-profile=srgb",
            "about:blank",
        ]
        # Chromium talks on fds 3 and 4 exactly. subprocess keeps our pipe ends open in
        # the child under their own numbers (pass_fds); bash, which takes multi-digit fd
        # numbers in redirections, moves them to 3 and 4 and then becomes the browser.
        trampoline = f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w} {to_browser_r}<&- {from_browser_w}>&-'
        try:
            self.process = subprocess.Popen(
                [shutil.which("bash") or "/bin/bash", "-c", trampoline, "bash", *args],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                pass_fds=(to_browser_r, from_browser_w),
                start_new_session=True,  # its own process group: one kill ends renderers too
            )
        except BaseException:
            for fd in (self._to_browser, self._from_browser):
                os.close(fd)
            self._log.close()
            self._tmp.cleanup()
            raise
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)

    # -- transport

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise BrowserError("Chromium did not answer in time" + self._stderr_tail())
        return left

    def _stderr_tail(self) -> str:
        try:
            self._log.flush()
            text = (Path(self._tmp.name) / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""
        return "; its stderr ends:\n" + text[-2000:] if text.strip() else ""

    def _closed(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            code = None
        return f"Chromium closed the DevTools pipe (exit status {code})" + self._stderr_tail()

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            _, writable, _ = select.select([], [self._to_browser], [], self._remaining())
            if writable:
                try:
                    data = data[os.write(self._to_browser, data) :]
                except BrokenPipeError:
                    raise BrowserError(self._closed()) from None

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            readable, _, _ = select.select([self._from_browser], [], [], self._remaining())
            if not readable:
                continue
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(self._closed())
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    # -- protocol

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply; events seen meanwhile are kept in order."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._send(message)
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, session: str | None = None, after: int = 0) -> dict[str, Any]:
        """The first event named ``method`` (from ``session``) at or after index ``after`` of the event log."""
        index = after
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            message = self._receive()
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str, session: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session,
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._log.close()
        self._tmp.cleanup()


def capture(path: str | os.PathLike[str], *, width: int = 1280, timeout: float = 30.0) -> PageCapture:
    """Load ``path`` in headless Chromium at ``width`` CSS pixels and capture the full page.

    Returns the PNG screenshot, its decoded RGB pixels, every request URL the page
    sent and the rectangle of every ``figure.plot svg``. Raises BrowserError on any
    failure, or when the whole capture takes longer than ``timeout`` seconds.
    """
    executable = find_chromium()
    if executable is None:
        raise BrowserError("no Chromium on PATH (tried: " + ", ".join(CHROMIUM_NAMES) + ")")
    url = Path(path).resolve().as_uri()
    browser = _DevTools(executable, time.monotonic() + timeout)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        browser.call("Page.enable", session=session)
        browser.call("Network.enable", session=session)
        metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False}
        browser.call("Emulation.setDeviceMetricsOverride", metrics, session)
        mark = len(browser.events)
        navigation = browser.call("Page.navigate", {"url": url}, session)
        if navigation.get("errorText"):
            raise BrowserError(f"navigation to {url} failed: {navigation['errorText']}")
        browser.wait_event("Page.loadEventFired", session, after=mark)
        browser.evaluate("document.fonts.ready.then(() => true)", session)

        # Grow the viewport to the whole page, so the layout measured is the one captured.
        height = int(browser.evaluate(_PAGE_HEIGHT_JS, session))
        browser.call("Emulation.setDeviceMetricsOverride", {**metrics, "height": height}, session)
        plots = json.loads(browser.evaluate(_PLOT_RECTS_JS, session))
        shot = browser.call(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "optimizeForSpeed": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            },
            session,
        )
        requests = [
            event["params"]["request"]["url"]
            for event in browser.events
            if event["method"] == "Network.requestWillBeSent" and event.get("sessionId") == session
        ]
    finally:
        browser.close()
    png = base64.b64decode(shot["data"])
    pixels = decode_png(png)[:, :, :3]
    return PageCapture(png, pixels, requests, plots)
