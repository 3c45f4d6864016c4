"""Taking a .tzip image apart and putting it back together with every offset and
checksum right, for the reader harness (its structure-aware mutator and its
checksum fix-up) and for fuzz/make_corpus.py.

Deliberately independent of tensorzip's own container code: the harness must
not share the bugs of the code it tests. Only the spec (docs/format.md) is used.
"""

from __future__ import annotations

import contextlib
import json
import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"\x89TZIP\r\n\x1a"
PREAMBLE = struct.Struct("<8sHHIQQII")  # magic, major, minor, flags, header offset/length, header crc, crc
PREAMBLE_SIZE = PREAMBLE.size  # 40


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, previous: int = 0) -> int:
    """CRC-32C (Castagnoli), bit-reflected, as in the format (a plain table version:
    also the reference the native harness checks the SIMD paths against)."""
    crc = previous ^ 0xFFFFFFFF
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# The checksum used to build images: this reference by default; the reader harness
# swaps in the native one (32 KB in pure Python costs milliseconds per input). A
# wrong native CRC would only make the reader refuse an image, never pass a bad
# one, and fuzz_native.py checks the native CRC against this reference.
checksum = crc32c


def preamble(header_offset: int, header_length: int, header_crc: int, major: int = 1, minor: int = 1,
             flags: int = 0) -> bytes:
    head = PREAMBLE.pack(MAGIC, major, minor, flags, header_offset, header_length, header_crc, 0)[:-4]
    return head + struct.pack("<I", checksum(head))


@dataclass
class Image:
    """A .tzip image in pieces: version, the chunk area (offset 40 on) and the header text."""

    major: int
    minor: int
    flags: int
    chunk_area: bytes
    header: bytes

    @classmethod
    def split(cls, data: bytes) -> Image | None:
        """The pieces, when the preamble's magic is right and its offsets lie inside
        ``data`` (checksums are not checked); else None."""
        if len(data) < PREAMBLE_SIZE or data[:8] != MAGIC:
            return None
        _, major, minor, flags, offset, length, _, _ = PREAMBLE.unpack_from(data)
        if offset < PREAMBLE_SIZE or offset + length > len(data):
            return None
        return cls(major, minor, flags, data[PREAMBLE_SIZE:offset], data[offset : offset + length])

    def join(self) -> bytes:
        offset = PREAMBLE_SIZE + len(self.chunk_area)
        return (preamble(offset, len(self.header), checksum(self.header), self.major, self.minor, self.flags)
                + self.chunk_area + self.header)

    def document(self) -> dict[str, Any] | None:
        """The header as JSON, when it is a JSON object with a tensors list."""
        try:
            doc = json.loads(self.header.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("tensors"), list):
            return None
        return doc

    def chunk_spans(self, doc: dict[str, Any]) -> list[tuple[dict[str, Any], int, int, int]]:
        """(tensor entry, chunk index, start, end) of every well-formed chunk, with
        start/end relative to the chunk area."""
        spans = []
        for entry in doc["tensors"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("chunks"), list):
                continue
            for index, chunk in enumerate(entry["chunks"]):
                if (isinstance(chunk, list) and len(chunk) == 3 and all(type(v) is int for v in chunk)
                        and chunk[0] >= PREAMBLE_SIZE and chunk[1] >= 0
                        and chunk[0] + chunk[1] <= PREAMBLE_SIZE + len(self.chunk_area)):
                    start = chunk[0] - PREAMBLE_SIZE
                    spans.append((entry, index, start, start + chunk[1]))
        return spans


def dump_header(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


def with_fixed_checksums(data: bytes) -> bytes:
    """``data`` with the preamble's and the header's CRC-32C recomputed (and, when the
    header is JSON, every chunk's CRC recomputed from the bytes it points at), so a
    mutation gets past the checksums to the parsers and decoders behind them."""
    image = Image.split(data)
    if image is None:
        return data
    doc = image.document()
    if doc is not None:
        changed = False
        for entry, index, start, end in image.chunk_spans(doc):
            crc = checksum(image.chunk_area[start:end])
            if entry["chunks"][index][2] != crc:
                entry["chunks"][index][2] = crc
                changed = True
        if changed:
            with contextlib.suppress(UnicodeEncodeError, ValueError, RecursionError):
                image.header = dump_header(doc)
    _, _, _, _, offset, length, _, _ = PREAMBLE.unpack_from(data)
    # Bytes after the header (which the reader must refuse) stay where they were.
    return image.join() + data[offset + length :]
