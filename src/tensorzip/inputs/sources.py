"""Where a reader's bytes come from when they are not a local file: a URL, read by exact
byte ranges (``open_remote``).

A .tzip reader asks for the preamble, the header, then only the chunks of the tensors it
decodes, so a remote file costs the bytes of what is loaded and not the whole file. Every
read checks it got exactly the bytes asked for (a server that ignores ``Range`` and sends
the whole file, a transfer cut short): a short or failed transfer is an InputFileError
naming the URL and the range, never data taken for what it is not.

``http(s)://`` is read with the standard library (``http_ranges``); any other scheme
(``s3://``, ``gs://``, ``hf://``, ...) through fsspec, when it is installed.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputFileError, TruncatedFileError
from .http_ranges import HttpFile
from .remote_file import RemoteFile, describe_error

__all__ = ["FsspecFile", "RemoteFile", "is_url", "open_remote"]


def is_url(source: object) -> bool:
    """A ``scheme://`` string (not a local path that happens to contain one)."""
    if not isinstance(source, str) or "://" not in source:
        return False
    scheme = source.split("://", 1)[0]
    return scheme.isidentifier() and scheme != "file" or scheme == "file" and not os.path.exists(source)


def open_remote(url: str) -> RemoteFile:
    """The file at ``url``, opened (its size known) for range reads."""
    if url.split("://", 1)[0].lower() in ("http", "https"):
        return HttpFile(url)
    return FsspecFile(url)


class FsspecFile(RemoteFile):
    """A file at an fsspec URL, read by ``cat_file`` ranges (fsspec's filesystems serve
    concurrent calls)."""

    def __init__(self, url: str):
        super().__init__(url)
        try:
            from fsspec.core import url_to_fs
        except ImportError:
            raise InputFileError(f"{url}: reading this kind of URL needs fsspec and its backend (s3fs, gcsfs, ...): "
                                 "pip install 'tensorzip[remote]'") from None
        try:
            self._fs, self._path = url_to_fs(url)
            info: dict[str, Any] = self._fs.info(self._path)
        except FileNotFoundError:
            raise InputFileError(f"{url}: not found (no such object)") from None
        except ImportError as error:
            raise InputFileError(f"{url}: this URL scheme needs a package that is not installed ({error})") from None
        except Exception as error:  # noqa: BLE001 - fsspec backends raise their own types
            raise InputFileError(f"{url}: cannot open ({describe_error(error)})") from None
        size = info.get("size")
        if not isinstance(size, int) or size < 0:
            raise InputFileError(f"{url}: the store does not say how big the file is; tensorzip reads remote "
                                 "files by byte ranges and needs their size")
        if info.get("type", "file") != "file":
            raise InputFileError(f"{url}: not a file ({info.get('type')})")
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        if length == 0:
            return b""
        end = offset + length
        try:
            data = self._fs.cat_file(self._path, start=offset, end=end)
        except FileNotFoundError:
            raise InputFileError(f"{self.where}: gone while reading bytes {offset}-{end - 1}") from None
        except Exception as error:  # noqa: BLE001 - fsspec backends raise their own types
            raise InputFileError(
                f"{self.where}: reading bytes {offset}-{end - 1} failed ({describe_error(error)})") from None
        self.requests += 1
        self.bytes_read += len(data)
        if len(data) != length:
            raise TruncatedFileError(
                f"{self.where}: asked for bytes {offset}-{end - 1} ({length:,} bytes) and got {len(data):,}; the "
                "transfer was cut short or the store ignores byte ranges")
        return bytes(data)
