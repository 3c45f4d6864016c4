"""A real local HTTP server that serves byte ranges, for the remote-loading tests and the
load benchmark: ``Range: bytes=A-B`` answered with 206 and exactly those bytes, HEAD with
the size, 404 for what is not there, and every byte sent counted. Optional: a bandwidth
limit shared by all connections (a token bucket: the 100 MB/s and 1 GB/s sources of
``benchmarks/run_load.py``), and faults (a file cut short mid-transfer, ranges ignored).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
_PIECE = 256 * 1024


@dataclass
class Served:
    """What the server sent, and how it misbehaves on purpose."""

    root: Path
    bandwidth: float | None = None  # bytes per second over all connections; None: as fast as it goes
    cut_after: int | None = None  # stop every body after this many bytes (a transfer cut short)
    ignore_ranges: bool = False  # answer every GET with the whole file, 200
    redirect_prefix: str | None = None  # "/moved": GET /moved/NAME answers 302 to /NAME (as a hub's CDN does)
    connections: int = 0  # TCP connections accepted (keep-alive makes this less than the requests)
    bytes_sent: int = 0
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, range)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next_free: float = 0.0  # the token bucket: when the link is free again

    def reset(self) -> None:
        with self.lock:
            self.bytes_sent = 0
            self.connections = 0
            self.requests.clear()

    def pace(self, size: int) -> None:
        """Wait until ``size`` more bytes fit in the bandwidth."""
        if self.bandwidth is None:
            return
        with self.lock:
            start = max(time.perf_counter(), self._next_free)
            self._next_free = start + size / self.bandwidth
            wake = self._next_free
        delay = wake - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def _handler(served: Served) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            with served.lock:
                served.connections += 1

        def _redirected(self) -> bool:
            prefix = served.redirect_prefix
            if prefix is None or not self.path.startswith(prefix + "/"):
                return False
            self.send_response(302)
            self.send_header("Location", self.path[len(prefix):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return True

        def _file(self) -> Path | None:
            relative = self.path.split("?", 1)[0].lstrip("/")
            path = (served.root / relative).resolve()
            if served.root.resolve() not in path.parents or not path.is_file():
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            return path

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            with served.lock:
                served.requests.append(("HEAD", self.path, ""))
            path = self._file()
            if path is None:
                return
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            wanted = self.headers.get("Range", "")
            with served.lock:
                served.requests.append(("GET", self.path, wanted))
            if self._redirected():
                return
            path = self._file()
            if path is None:
                return
            size = path.stat().st_size
            match = _RANGE.match(wanted)
            if match and not served.ignore_ranges:
                start = int(match.group(1))
                end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
                if start >= size or end < start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                start, end = 0, size - 1
                self.send_response(200)
            length = end - start + 1
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            budget = length if served.cut_after is None else min(length, served.cut_after)
            with open(path, "rb") as handle:
                handle.seek(start)
                while budget > 0:
                    piece = handle.read(min(_PIECE, budget))
                    if not piece:
                        break
                    served.pace(len(piece))
                    with served.lock:  # counted before it is sent: a client that has it sees it counted
                        served.bytes_sent += len(piece)
                    try:
                        self.wfile.write(piece)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    budget -= len(piece)
            if served.cut_after is not None and served.cut_after < length:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)

    return Handler


@contextlib.contextmanager
def range_server(root: str | os.PathLike[str], **options: object) -> Iterator[tuple[str, Served]]:
    """Serve ``root`` on 127.0.0.1 (a free port) while in the block: yields the base URL
    (``http://127.0.0.1:PORT``) and the ``Served`` record (options: its fields)."""
    served = Served(Path(root), **options)  # type: ignore[arg-type]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="range-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
