"""Constants and the fixed-size preamble of the .tzip format (docs/format.md).

Kept apart from the reader and writer so the spec's numbers live in one place.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .. import _native
from ..errors import FormatError, HeaderError, LimitExceededError

MAGIC = b"\x89TZIP\r\n\x1a"
FORMAT_MAJOR = 1
FORMAT_MINOR = 1  # 1.1 added bases (delta coding) and same_as; files without them are 1.0

# magic, major, minor, flags, header_offset, header_length, header_crc32c, preamble_crc32c
_PREAMBLE = struct.Struct("<8sHHIQQII")
PREAMBLE_SIZE = _PREAMBLE.size  # 40
DATA_START = PREAMBLE_SIZE

DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024

# Preamble flags. Bit 0 (session 5, issue 22): the header is stored as a zlib stream (RFC 1950)
# of its JSON; header_length and the header CRC are of the stored bytes. A small checkpoint's
# header is a large part of it (63 MiniLM biases and norms, FP32: 19.6 KB of JSON beside 110 KB
# of chunks; zlib level 9 makes it 2.1 KB), and JSON compresses well.
FLAG_HEADER_ZLIB = 0x1
KNOWN_FLAGS = FLAG_HEADER_ZLIB


@dataclass(frozen=True)
class Preamble:
    header_offset: int
    header_length: int
    header_crc32c: int
    major: int = FORMAT_MAJOR
    minor: int = FORMAT_MINOR
    flags: int = 0

    def pack(self) -> bytes:
        head = _PREAMBLE.pack(
            MAGIC, self.major, self.minor, self.flags,
            self.header_offset, self.header_length, self.header_crc32c, 0,
        )[:-4]
        return head + struct.pack("<I", _native.crc32c(head))

    @classmethod
    def unpack(cls, raw: bytes, where: str) -> Preamble:
        if len(raw) < PREAMBLE_SIZE:
            if raw[: len(MAGIC)] != MAGIC[: len(raw)]:
                raise FormatError(f"{where}: not a .tzip file (bad magic)")
            raise FormatError(f"{where}: file is {len(raw)} bytes, shorter than the {PREAMBLE_SIZE}-byte preamble")
        magic, major, minor, flags, offset, length, header_crc, crc = _PREAMBLE.unpack(raw[:PREAMBLE_SIZE])
        if magic != MAGIC:
            raise FormatError(f"{where}: not a .tzip file (bad magic {magic!r})")
        if _native.crc32c(raw[: PREAMBLE_SIZE - 4]) != crc:
            raise HeaderError(f"{where}: preamble checksum mismatch at offset 0 (the file is damaged)")
        if major != FORMAT_MAJOR:
            raise FormatError(
                f"{where}: format version {major}.{minor} is not readable by this release "
                f"(reads {FORMAT_MAJOR}.x); upgrade tensorzip"
            )
        if flags & ~KNOWN_FLAGS:
            raise FormatError(f"{where}: preamble flags {flags:#x} include some this release does not know "
                              f"(it knows {KNOWN_FLAGS:#x}): the file was written by a newer tensorzip; "
                              "upgrade tensorzip")
        return cls(offset, length, header_crc, major, minor, flags)


def pack_header(header: bytes) -> tuple[bytes, int]:
    """(the header as stored, the preamble flags that say how): zlib-compressed where that
    is shorter."""
    packed = zlib.compress(header, 9)
    return (packed, FLAG_HEADER_ZLIB) if len(packed) < len(header) else (header, 0)


def unpack_header(stored: bytes, flags: int, limit: int, where: str, offset: int) -> bytes:
    """The header's JSON bytes from what is stored; a compressed header is inflated to at
    most ``limit`` bytes (more is refused, so a small stream cannot expand without bound)."""
    if not flags & FLAG_HEADER_ZLIB:
        return stored
    inflater = zlib.decompressobj()
    try:
        header = inflater.decompress(stored, limit + 1)
    except zlib.error as error:
        raise HeaderError(f"{where}: the compressed header at offset {offset} is not a valid zlib stream "
                          f"({error}; the file is damaged)") from None
    if len(header) > limit:
        raise LimitExceededError(f"{where}: the compressed header at offset {offset} inflates to more than "
                                 f"{limit:,} bytes (ReadLimits.max_header_bytes)")
    if not inflater.eof or inflater.unused_data:
        raise HeaderError(f"{where}: the compressed header at offset {offset} is cut short or has trailing "
                          "bytes (the file is damaged)")
    return header
