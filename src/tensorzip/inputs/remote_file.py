"""What a reader needs of a file that is not local: its size and exact byte ranges.

Two transports implement it (``sources.open_remote`` picks one): ``http_ranges.HttpFile``
for ``http(s)://`` and ``sources.FsspecFile`` for every other fsspec URL (``s3://``,
``gs://``, ...). Both count what they transferred, which is how the tests check that
loading one tensor costs its chunks and not the file.
"""

from __future__ import annotations


class RemoteFile:
    """A remote file read by byte ranges; thread-safe."""

    size: int

    def __init__(self, url: str):
        self.where = url
        self.bytes_read = 0
        self.requests = 0

    def read(self, offset: int, length: int) -> bytes | bytearray:
        """Exactly ``length`` bytes at ``offset``, or a TensorzipError naming the URL and range."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connections."""


def describe_error(error: BaseException) -> str:
    """An exception as one short line (transport errors can carry whole responses)."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__
