"""Constants and the fixed-size preamble of the .tzip format (docs/format.md).

Kept apart from the reader and writer so the spec's numbers live in one place.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .. import _native
from ..errors import FormatError, HeaderError

MAGIC = b"\x89TZIP\r\n\x1a"
FORMAT_MAJOR = 1
FORMAT_MINOR = 1  # 1.1 added bases (delta coding) and same_as; files without them are 1.0

# magic, major, minor, flags, header_offset, header_length, header_crc32c, preamble_crc32c
_PREAMBLE = struct.Struct("<8sHHIQQII")
PREAMBLE_SIZE = _PREAMBLE.size  # 40
DATA_START = PREAMBLE_SIZE

DEFAULT_MAX_HEADER_BYTES = 100 * 1024 * 1024


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
        if flags != 0:
            raise FormatError(f"{where}: unknown preamble flags {flags:#x}")
        return cls(offset, length, header_crc, major, minor, flags)
