"""An ``http(s)://`` file read by byte ranges over kept-alive connections, with the standard
library only.

Why not fsspec here: loading a model is a few large range requests, and fsspec's HTTP
filesystem runs each through aiohttp on an event-loop thread, whose Python-level work
competes for the GIL with the model construction that the download should overlap. Here
a range is one ``GET`` on a pooled connection, its body read by ``readinto`` straight into
the buffer that is returned (the socket reads release the GIL). Opening costs one request:
the first bytes of the file, whose ``Content-Range`` also gives its size.

Every answer is checked against the question: a 200 to a ranged request (a server that
ignores ``Range``), a ``Content-Range`` other than the one asked for, a compressed body or a
body cut short is an error naming the URL and the bytes, never data taken for what it is not.
"""

from __future__ import annotations

import http.client
import re
import ssl
import threading
from urllib.parse import urljoin, urlsplit

from ..errors import InputFileError, TruncatedFileError
from .remote_file import RemoteFile

PROBE_BYTES = 64  # the first request's bytes: a .tzip preamble or a safetensors header length
TIMEOUT_SECONDS = 60.0
MAX_REDIRECTS = 10
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)$")
_UNSATISFIABLE = re.compile(r"bytes \*/(\d+)$")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "tensorzip (byte-range reader)"


class HttpFile(RemoteFile):
    """A file at an ``http://`` or ``https://`` URL. Thread-safe: each concurrent read
    takes its own connection from a pool, and returns it when its body is fully read."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT_SECONDS):
        super().__init__(url)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._target = urlsplit(url)  # where the file is after redirects
        self._probe, self.size = self._first_bytes()

    # -- RemoteFile ---------------------------------------------------------------------

    def read(self, offset: int, length: int) -> bytes | bytearray:
        """Exactly ``length`` bytes at ``offset``."""
        if length <= 0:
            return b""
        if offset + length <= len(self._probe):
            return self._probe[offset : offset + length]
        if offset + length > self.size:
            raise TruncatedFileError(f"{self.where}: needs bytes up to {offset + length:,} but the file has "
                                     f"{self.size:,}")
        return self._get_range(offset, length)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    # -- requests -----------------------------------------------------------------------

    def _first_bytes(self) -> tuple[bytes, int]:
        """The file's first bytes and its size, in one request (following redirects)."""
        for _ in range(MAX_REDIRECTS + 1):
            connection = self._connection()
            response = self._request(connection, 0, PROBE_BYTES - 1)
            status = response.status
            if status in _REDIRECTS:
                location = response.getheader("Location")
                self._discard(connection, response)
                if not location:
                    raise InputFileError(f"{self.where}: redirect ({status}) without a Location")
                self._follow(location)
                continue
            if status == 416:  # an empty file: no byte 0 to send
                match = _UNSATISFIABLE.match(response.getheader("Content-Range") or "")
                self._discard(connection, response)
                if match is None or int(match.group(1)) != 0:
                    raise InputFileError(f"{self.where}: the server refused the range bytes=0-{PROBE_BYTES - 1} "
                                         "(416) without saying the file's size")
                return b"", 0
            self._check_status(connection, response, 0, PROBE_BYTES - 1)
            first, last, total = self._content_range(connection, response, 0)
            body = self._body(connection, response, first, last - first + 1)
            return bytes(body), total
        raise InputFileError(f"{self.where}: more than {MAX_REDIRECTS} redirects")

    def _get_range(self, offset: int, length: int) -> bytearray:
        last = offset + length - 1
        for attempt in (0, 1):  # a kept-alive connection the server has since closed: once more, fresh
            connection = self._connection()
            try:
                response = self._request(connection, offset, last)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                connection.close()
                if attempt == 0:
                    continue
                raise InputFileError(f"{self.where}: the server closed the connection when asked for bytes "
                                     f"{offset}-{last}") from None
            self._check_status(connection, response, offset, last)
            first, got_last, total = self._content_range(connection, response, offset)
            if got_last != last or total != self.size:
                self._discard(connection, response)
                raise InputFileError(f"{self.where}: asked for bytes {offset}-{last} of {self.size:,} and the server "
                                     f"answered with bytes {first}-{got_last} of {total:,} (the file changed?)")
            return self._body(connection, response, offset, length)
        raise AssertionError("unreachable")

    def _request(self, connection: http.client.HTTPConnection, first: int, last: int) -> http.client.HTTPResponse:
        path = self._target.path or "/"
        if self._target.query:
            path += "?" + self._target.query
        headers = {"Range": f"bytes={first}-{last}", "Accept-Encoding": "identity", "User-Agent": _USER_AGENT}
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            raise
        except TimeoutError:
            connection.close()
            raise InputFileError(f"{self.where}: no answer in {self._timeout:g} s (bytes {first}-{last})") from None
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            raise InputFileError(f"{self.where}: cannot connect or read ({type(error).__name__}: {error})") from None
        with self._lock:
            self.requests += 1
        return response

    def _check_status(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse,
                      first: int, last: int) -> None:
        status = response.status
        if status == 206:
            encoding = (response.getheader("Content-Encoding") or "identity").lower()
            if encoding != "identity":
                self._discard(connection, response)
                raise InputFileError(f"{self.where}: the server sent bytes {first}-{last} {encoding}-encoded, "
                                     "though asked for them as they are")
            return
        self._discard(connection, response)
        if status == 200:
            raise TruncatedFileError(f"{self.where}: the server ignores byte ranges (answered 200 with the whole "
                                     f"file when asked for bytes {first}-{last}); tensorzip reads remote files by "
                                     "range: download the file and give its path")
        if status in (404, 410):
            raise InputFileError(f"{self.where}: not found ({status})")
        if status in (401, 403):
            raise InputFileError(f"{self.where}: access denied ({status} {response.reason})")
        raise InputFileError(f"{self.where}: the server answered {status} {response.reason} to a request for "
                             f"bytes {first}-{last}")

    def _content_range(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse,
                       first: int) -> tuple[int, int, int]:
        header = response.getheader("Content-Range") or ""
        match = _CONTENT_RANGE.match(header)
        if match is None or int(match.group(1)) != first or int(match.group(2)) < first:
            self._discard(connection, response)
            raise InputFileError(f"{self.where}: asked for bytes from {first} and the server answered 206 with "
                                 f"Content-Range {header!r}")
        return int(match.group(1)), int(match.group(2)), int(match.group(3))

    def _body(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse, offset: int,
              length: int) -> bytearray:
        """Exactly ``length`` bytes of the response, read into one buffer; the connection
        goes back to the pool only when the whole body was read."""
        data = bytearray(length)
        view = memoryview(data)
        done = 0
        try:
            while done < length:
                got = response.readinto(view[done:])
                if not got:
                    break
                done += got
        except TimeoutError:
            connection.close()
            raise InputFileError(f"{self.where}: the transfer of bytes {offset}-{offset + length - 1} stalled "
                                 f"for {self._timeout:g} s after {done:,} bytes") from None
        except (OSError, http.client.HTTPException) as error:
            done = min(done, length - 1)
            connection.close()
            raise TruncatedFileError(
                f"{self.where}: asked for bytes {offset}-{offset + length - 1} ({length:,} bytes) and got {done:,}; "
                f"the transfer was cut short ({type(error).__name__})") from None
        if done != length or response.length not in (0, None):
            connection.close()
            raise TruncatedFileError(
                f"{self.where}: asked for bytes {offset}-{offset + length - 1} ({length:,} bytes) and got {done:,}; "
                "the transfer was cut short or the server ignores byte ranges")
        with self._lock:
            self.bytes_read += length
            if not response.will_close:
                self._idle.append(connection)
        if response.will_close:
            connection.close()
        return data

    # -- connections --------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            target = self._target
        if target.scheme == "https":
            return http.client.HTTPSConnection(target.hostname or "", target.port, timeout=self._timeout,
                                               context=ssl.create_default_context())
        if target.scheme == "http":
            return http.client.HTTPConnection(target.hostname or "", target.port, timeout=self._timeout)
        raise InputFileError(f"{self.where}: redirected to {target.geturl()}, which is not http(s)")

    def _follow(self, location: str) -> None:
        with self._lock:
            self._target = urlsplit(urljoin(self._target.geturl(), location))
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _discard(self, connection: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        """An answer not taken: its connection is closed rather than its body read."""
        response.close()
        connection.close()
