"""The compressors tensorzip is compared with, behind one small interface.

Each peer has ``name``, ``compress(data, threads) -> bytes`` and
``decompress(blob, threads) -> bytes`` and maps a whole safetensors file to a
self-contained blob and back, so every peer is charged for the same bytes.
Generic codecs see the whole file; ZipNN needs each tensor's dtype and so
works tensor by tensor.

``compress`` may overwrite its input (ZipNN 0.5.4 rewrites the buffer it is
given in place for bfloat16 and float32, even an immutable ``bytes``), so the
caller must pass a private copy, made outside any timed region.
"""

import struct

import blosc2
import lz4.frame
import zstandard

from stfile import parse


class Zstd:
    """zstd on the whole file; threads > 1 uses zstd's own multithreading."""

    def __init__(self, level: int):
        self.level = level
        self.name = f"zstd-{level}"

    def compress(self, data, threads: int) -> bytes:
        # threads=0 is zstd's single-threaded mode (1 would add a worker thread).
        workers = threads if threads > 1 else 0
        return zstandard.ZstdCompressor(level=self.level, threads=workers).compress(data)

    def decompress(self, blob, threads: int) -> bytes:
        # zstd decompression is single-threaded whatever ``threads`` says.
        return zstandard.ZstdDecompressor().decompress(blob)


class Lz4:
    """LZ4 frame, default (fast) level, on the whole file; single-threaded."""

    name = "lz4"

    def compress(self, data, threads: int) -> bytes:
        return lz4.frame.compress(data)

    def decompress(self, blob, threads: int) -> bytes:
        return lz4.frame.decompress(blob)


class Blosc2:
    """blosc2 with byte shuffle (typesize = element size) + zstd, on the whole file.

    The data section of a safetensors file starts 8-byte aligned, so the
    shuffle lines up with the elements of every tensor.
    """

    def __init__(self, typesize: int, clevel: int = 5):
        self.typesize = typesize
        self.clevel = clevel
        self.name = f"blosc2-zstd-{clevel}-shuffle"

    def compress(self, data, threads: int) -> bytes:
        return blosc2.compress2(
            data,
            cparams=blosc2.CParams(
                codec=blosc2.Codec.ZSTD,
                clevel=self.clevel,
                typesize=self.typesize,
                filters=[blosc2.Filter.SHUFFLE],
                filters_meta=[0],
                nthreads=threads,
            ),
        )

    def decompress(self, blob, threads: int) -> bytes:
        return blosc2.decompress2(blob, dparams=blosc2.DParams(nthreads=threads))


# ZipNN's byte API needs each tensor's dtype; other dtypes are stored raw, as
# ZipNN's own safetensors plugin leaves them (here: the header and one int64
# tensor, about 15 KB of MiniLM's files).
ZIPNN_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
# Best lossless chunk size per dtype, measured on MiniLM: ZipNN Huffman-codes
# each byte plane of a chunk and stores a plane raw once it exceeds 128 KiB
# (HUF's block limit), so fp32 must stay at <= 512 KiB and 16-bit at <= 256 KiB;
# 128 KiB is best for fp32 (1.2212 vs 1.2209 at the default 256 KiB).
ZIPNN_CHUNK = {"BF16": 256 * 1024, "F16": 256 * 1024, "F32": 128 * 1024}
_SEGMENT = struct.Struct("<BQ")  # kind (0 raw, 1 zipnn), payload length


class ZipNN:
    """ZipNN 0.5.4 per tensor (byte API); the blob is a list of segments."""

    name = "zipnn"

    def __init__(self):
        import zipnn  # imports torch: keep it out of runs that skip ZipNN

        self._zipnn = zipnn
        self._codecs = {}

    def _codec(self, dtype: str | None, threads: int):
        """One ZipNN object per (dtype, threads), created once and reused.

        ``dtype=None`` is the decoder. It is kept apart from the encoders
        because ``decompress`` overwrites the object's settings (chunk size,
        dtype) with those read from each blob's header; a blob records its
        dtype, so one decoder serves them all.
        """
        key = (dtype, threads)
        if key not in self._codecs:
            settings = {} if dtype is None else {
                "bytearray_dtype": ZIPNN_DTYPES[dtype], "compression_chunk": ZIPNN_CHUNK[dtype]}
            self._codecs[key] = self._zipnn.ZipNN(input_format="byte", threads=threads, **settings)
        return self._codecs[key]

    def compress(self, data, threads: int) -> bytes:
        base, tensors = parse(data)
        view = memoryview(data)
        parts = [_SEGMENT.pack(0, base), view[:base]]
        pos = base
        for t in tensors:
            if t.start != pos:
                raise ValueError(f"gap before tensor {t.name}")
            if t.dtype in ZIPNN_DTYPES:
                payload = self._codec(t.dtype, threads).compress(view[t.start:t.end])
                parts += [_SEGMENT.pack(1, len(payload)), payload]
            else:
                parts += [_SEGMENT.pack(0, t.end - t.start), view[t.start:t.end]]
            pos = t.end
        if pos != len(data):
            raise ValueError("trailing bytes after the last tensor")
        return b"".join(parts)

    def decompress(self, blob, threads: int) -> bytes:
        codec = self._codec(None, threads)
        view = memoryview(blob)
        parts = []
        pos = 0
        while pos < len(view):
            kind, size = _SEGMENT.unpack_from(view, pos)
            pos += _SEGMENT.size
            parts.append(codec.decompress(view[pos:pos + size]) if kind else view[pos:pos + size])
            pos += size
        return b"".join(parts)


class ZipNNWhole(ZipNN):
    """ZipNN 0.5.4 on the whole data area as one buffer, with its default chunk size.

    Fewer, larger calls than per tensor: on MiniLM this is ZipNN's fastest mode
    (the one int64 tensor, 4 KB, rides along as if it were float; still lossless).
    """

    name = "zipnn-whole"

    def compress(self, data, threads: int) -> bytes:
        base, tensors = parse(data)
        dtype = next(t.dtype for t in tensors if t.dtype in ZIPNN_DTYPES)
        view = memoryview(data)
        codec = self._codecs.get((dtype, threads, "whole"))
        if codec is None:
            codec = self._zipnn.ZipNN(input_format="byte", threads=threads, bytearray_dtype=ZIPNN_DTYPES[dtype])
            self._codecs[(dtype, threads, "whole")] = codec
        payload = codec.compress(view[base:])
        return b"".join([_SEGMENT.pack(0, base), view[:base], _SEGMENT.pack(1, len(payload)), payload])


def all_peers(typesize: int) -> list:
    """Every peer, configured for a file whose float elements are ``typesize`` bytes."""
    return [Zstd(3), Zstd(19), Lz4(), Blosc2(typesize), ZipNN(), ZipNNWhole()]
