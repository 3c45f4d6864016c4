"""MemoryFile: an in-memory target that grows without losing a byte, and the file
functions writing into it."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import save_file

import tensorzip as tz


def test_grows_and_keeps_every_byte(rng):
    f = tz.MemoryFile()
    chunks = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (1, 4095, 70_000, 3 << 20, 5)]
    for chunk in chunks:
        assert f.write(chunk) == len(chunk)
    assert bytes(f.getbuffer()) == b"".join(chunks)
    f.seek(2)
    f.write(b"XY")
    assert bytes(f.getbuffer()[:4]) == chunks[0] + chunks[1][:1] + b"XY"


def test_growing_while_a_view_is_held_copies_instead(rng):
    f = tz.MemoryFile(16)
    f.write(b"a" * 16)
    view = f.getbuffer()  # a held view forbids resizing in place
    f.write(b"b" * (1 << 20))
    assert bytes(view) == b"a" * 16
    assert bytes(f.getbuffer()) == b"a" * 16 + b"b" * (1 << 20)


def test_round_trip_through_memory_files(tmp_path, rng):
    source = tmp_path / "m.safetensors"
    save_file({"w": (rng.standard_normal((300, 200)) * 0.02).astype(np.float32),
               "ids": np.arange(100, dtype=np.int64)}, str(source))
    packed = tz.MemoryFile()
    report = tz.compress_file(source, packed)
    assert report.compressed_bytes == len(packed)
    restored = tz.MemoryFile()
    tz.decompress_file(bytes(packed.getbuffer()), restored)
    assert bytes(restored.getbuffer()) == source.read_bytes()
