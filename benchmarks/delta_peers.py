"""The ways to store a checkpoint against its base that tensorzip is compared with.

Each has ``name``, ``compress(data, base) -> bytes`` and
``decompress(blob, base) -> bytes``, mapping a whole safetensors file (and the
whole base file) to a self-contained blob and back, so all are charged for the
same bytes. Tensors are paired with the base by name; a tensor the base lacks
(or holds with another size) is coded without it, as each tool would.

- ZipNN's delta mode (0.5.4): XOR with the base tensor, then ZipNN's byte
  grouping and Huffman coding (``delta_compressed_type="byte"``).
- BitX (XOR + byte grouping + zstd): XOR with the base tensor, split into byte
  planes, zstd level 3 over the planes, as in the BitX paper's scheme.

Blobs are lists of segments ``(kind, length, payload)``: 0 raw, 1 coded.
"""

import struct

import numpy as np
import zstandard

from peers import ZIPNN_CHUNK, ZIPNN_DTYPES
from stfile import parse

_SEGMENT = struct.Struct("<BQ")


def _pairs(data, base):
    """(header length, [(tensor, base bytes or None)]) in file order. ``data`` may be just
    the safetensors header: only the declared layout is read from it."""
    header, tensors = parse(data)
    _, base_tensors = parse(base)
    by_name = {t.name: t for t in base_tensors}
    out = []
    for t in tensors:
        other = by_name.get(t.name)
        same = other is not None and other.dtype == t.dtype and other.end - other.start == t.end - t.start
        out.append((t, memoryview(base)[other.start:other.end] if same else None))
    return header, out


def _segments(blob):
    view = memoryview(blob)
    pos = 0
    while pos < len(view):
        kind, size = _SEGMENT.unpack_from(view, pos)
        pos += _SEGMENT.size
        yield kind, view[pos:pos + size]
        pos += size


def _stored_tensors(blob, base):
    """The blob's safetensors header, and per tensor (kind, payload, tensor, base bytes or None)."""
    segments = list(_segments(blob))
    header = bytes(segments[0][1])
    _, pairs = _pairs(header, base)
    return header, [(kind, payload, t, partner)
                    for (kind, payload), (t, partner) in zip(segments[1:], pairs, strict=True)]


class ZipNNDelta:
    """ZipNN 0.5.4's delta mode per tensor; tensors without a base partner get plain ZipNN."""

    name = "zipnn-delta"

    def __init__(self):
        import zipnn  # imports torch: keep it out of runs that skip ZipNN

        self._zipnn = zipnn

    def _codec(self, dtype, delta: bool):
        settings = {"bytearray_dtype": ZIPNN_DTYPES[dtype], "compression_chunk": ZIPNN_CHUNK[dtype]}
        if delta:
            settings["delta_compressed_type"] = "byte"
        return self._zipnn.ZipNN(input_format="byte", threads=1, **settings)

    def compress(self, data, base) -> bytes:
        header, pairs = _pairs(data, base)
        view = memoryview(data)
        parts = [_SEGMENT.pack(0, header), view[:header]]
        for t, partner in pairs:
            chunk = view[t.start:t.end]
            if t.dtype not in ZIPNN_DTYPES:
                parts += [_SEGMENT.pack(0, len(chunk)), chunk]
                continue
            if partner is not None:
                payload = self._codec(t.dtype, True).compress(bytes(chunk), delta_second_data=bytes(partner))
                kind = 2
            else:
                payload = self._codec(t.dtype, False).compress(bytes(chunk))
                kind = 1
            parts += [_SEGMENT.pack(kind, len(payload)), payload]
        return b"".join(parts)

    def decompress(self, blob, base) -> bytes:
        header, stored = _stored_tensors(blob, base)
        parts = [header]
        for kind, payload, t, partner in stored:
            if kind == 0:
                parts.append(payload)
            elif kind == 1:
                parts.append(self._codec(t.dtype, False).decompress(bytes(payload)))
            else:
                parts.append(self._codec(t.dtype, True).decompress(bytes(payload), delta_second_data=bytes(partner)))
        return b"".join(parts)


class BitX:
    """XOR with the base tensor, byte planes, zstd level 3 (the BitX scheme)."""

    name = "bitx-xor-planes-zstd3"

    def __init__(self, level: int = 3):
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()

    def compress(self, data, base) -> bytes:
        header, pairs = _pairs(data, base)
        view = memoryview(data)
        parts = [_SEGMENT.pack(0, header), view[:header]]
        for t, partner in pairs:
            raw = np.frombuffer(view[t.start:t.end], np.uint8)
            if partner is not None:
                raw = raw ^ np.frombuffer(partner, np.uint8)
            planes = raw.reshape(-1, t.width).T.tobytes()  # plane k = byte k of every element
            payload = self._compressor.compress(planes)
            parts += [_SEGMENT.pack(1, len(payload)), payload]
        return b"".join(parts)

    def decompress(self, blob, base) -> bytes:
        header, stored = _stored_tensors(blob, base)
        parts = [header]
        for _, payload, t, partner in stored:
            planes = np.frombuffer(self._decompressor.decompress(payload), np.uint8)
            raw = planes.reshape(t.width, -1).T.reshape(-1)
            if partner is not None:
                raw = raw ^ np.frombuffer(partner, np.uint8)
            parts.append(raw.tobytes())
        return b"".join(parts)
