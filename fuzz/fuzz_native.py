"""Fuzz every entry point of the native core (tensorzip._native) directly.

A FuzzedDataProvider picks an operation (the input's first byte) and then its
buffers and parameters. The decoders must answer any input with a clean
exception (ValueError and its subclasses ChunkError / CorruptStreamError,
TypeError for arguments of the wrong type, BufferError for unusable buffers) or
a result; anything else, a wrong result where one can be checked, and every
ASan/UBSan report are findings.

Operations:
0 decode_raw        decode_tensors on arbitrary bytes, chunk tables and layouts
                    (valid and invalid widths, rotations, chunk sizes, offsets)
1 decode_built      chunks assembled plane by plane: raw / constant / rANS (frequency
                    table in either form, well-formed or not; rANS states and words)
                    / unknown modes, honest or wrong lengths. Chunks with only raw
                    and constant planes must decode to the merge computed here.
2 round_trip        encode_tensors and StreamingEncoder on shaped data, decoded back:
                    must be identical; CRCs and histograms must match references
3 decode_mutated    a real encoded batch with bytes flipped, inserted or cut, decoded
                    one chunk at a time and in pairs
4 crc32c            against a table-driven reference, at every alignment, and in pieces
5 delta             delta_residual / delta_restore: round trip, xor reference, bad sizes
6 plane_histograms  every plane's counts sum to the element count; bad layouts refused
7 buffers           each entry point given odd buffers (read-only out, non-contiguous,
                    wrong types, negative numbers, huge counts)

Run through fuzz/run.sh; by hand: fuzz/run.sh 60 native
"""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import atheris
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tzip_image  # noqa: E402

with atheris.instrument_imports(include=["tensorzip"]):
    from tensorzip import _native

CLEAN = (ValueError, TypeError, BufferError)
WIDTHS = [1, 2, 4, 8]
MAX_CHUNK = 4 << 20
LANES = 32


def _width(fdp: atheris.FuzzedDataProvider) -> int:
    return fdp.PickValueInList(WIDTHS) if fdp.ConsumeProbability() < 0.95 else fdp.ConsumeIntInRange(-2, 17)


def _rotate(fdp: atheris.FuzzedDataProvider) -> int:
    return fdp.ConsumeIntInRange(0, 1) if fdp.ConsumeProbability() < 0.95 else fdp.ConsumeIntInRange(-3, 70)


def _chunk_elements(fdp: atheris.FuzzedDataProvider, width: int) -> int:
    choice = fdp.ConsumeIntInRange(0, 9)
    if choice == 0:
        return fdp.ConsumeIntInRange(-1, 0)
    if choice == 1:
        return MAX_CHUNK // max(1, width) + fdp.ConsumeIntInRange(-1, 1)
    if choice == 2:
        return fdp.ConsumeIntInRange(8000, 20000)  # several decode blocks (8192)
    return fdp.ConsumeIntInRange(1, 300)


def _fill(fdp: atheris.FuzzedDataProvider, count: int) -> bytes:
    """``count`` bytes: fuzzer bytes repeated, so short inputs make long buffers."""
    if count <= 0:
        return b""
    seed = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64)) or b"\x00"
    return (seed * (count // len(seed) + 1))[:count]


def _shaped(fdp: atheris.FuzzedDataProvider, count: int) -> np.ndarray:
    """Bytes with structure the encoder reacts to (few symbols, runs, zeros, noise)."""
    raw = np.frombuffer(_fill(fdp, count), np.uint8).copy()
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind == 1 and raw.size:
        raw %= max(1, fdp.ConsumeIntInRange(1, 16))
    elif kind == 2 and raw.size:
        raw[:] = raw[0]
    elif kind == 3 and raw.size:
        raw[raw < 230] = 0
    elif kind == 4 and raw.size:
        rng = np.random.default_rng(fdp.ConsumeIntInRange(0, 1 << 30))
        raw = rng.integers(0, 256, raw.size, dtype=np.uint8)
    return raw


def _weights(fdp: atheris.FuzzedDataProvider, elements: int, width: int) -> np.ndarray:
    """Trained-weight-like floats (normal values) of 2, 4 or 8 bytes, whose plane 1 the max
    level codes given plane 0: the input that reaches chunk plane mode 3."""
    rng = np.random.default_rng(fdp.ConsumeIntInRange(0, 1 << 30))
    values = rng.standard_normal(elements) * 10.0 ** -fdp.ConsumeIntInRange(0, 4)
    if width == 2:
        return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    return values.astype(np.float32 if width == 4 else np.float64).view(np.uint8)


def _decode(jobs: list, threads: int, verify: bool) -> bool:
    try:
        _native.decode_tensors(jobs, threads, verify)
        return True
    except CLEAN:
        return False


# -- 0: arbitrary bytes -------------------------------------------------------------------


def op_decode_raw(fdp: atheris.FuzzedDataProvider) -> None:
    jobs = []
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        width, rotate = _width(fdp), _rotate(fdp)
        chunk_elements = _chunk_elements(fdp, width)
        elements = fdp.ConsumeIntInRange(0, 3 * max(1, min(chunk_elements, 3000)))
        source = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 2000))
        table = []
        for _ in range(fdp.ConsumeIntInRange(0, 5)):
            offset = fdp.ConsumeIntInRange(0, len(source) + 2)
            length = fdp.ConsumeIntInRange(0, len(source) + 2)
            if fdp.ConsumeBool():
                length = max(0, min(length, len(source) - offset))
            crc = _native.crc32c(source[offset : offset + length]) if fdp.ConsumeBool() else fdp.ConsumeInt(4)
            table.append((offset, length, crc & 0xFFFFFFFF))
        out = bytearray(elements * max(1, width) + fdp.ConsumeIntInRange(0, 1) * (fdp.ConsumeIntInRange(0, 3)))
        jobs.append((source, table, out, width, rotate, chunk_elements))
    _decode(jobs, fdp.ConsumeIntInRange(1, 2), fdp.ConsumeBool())


# -- 1: chunks assembled plane by plane ---------------------------------------------------------


def _frequency_table(fdp: atheris.FuzzedDataProvider) -> tuple[bytes, list[int], list[int]]:
    """A serialized table (kind 0 or 1), its symbols and frequencies; usually valid."""
    if fdp.ConsumeProbability() < 0.1:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 40)), [], []
    count = fdp.ConsumeIntInRange(1 if fdp.ConsumeProbability() < 0.05 else 2, 256)
    symbols = sorted(set(fdp.ConsumeBytes(count))) or [0]
    if len(symbols) < 2 and fdp.ConsumeProbability() < 0.9:
        symbols = sorted({symbols[0], (symbols[0] + 1) % 256})
    if len(symbols) > 4096:
        symbols = symbols[:4096]
    weights = [1 + fdp.ConsumeIntInRange(0, 255) for _ in symbols]
    total = sum(weights)
    freqs = [max(1, w * 4096 // total) for w in weights]
    freqs[freqs.index(max(freqs))] += 4096 - sum(freqs)
    if fdp.ConsumeProbability() < 0.1:
        freqs[fdp.ConsumeIntInRange(0, len(freqs) - 1)] += fdp.ConsumeIntInRange(-2, 2)
    if fdp.ConsumeProbability() < 0.03:
        freqs[0] = fdp.PickValueInList([0, 4096, 4095, 1 << 21, 1 << 28])
    body = bytearray()
    if fdp.ConsumeBool():
        body += bytes([0, (len(symbols) - 1) & 0xFF, *symbols])
    else:
        bitmap = bytearray(32)
        for s in symbols:
            bitmap[s >> 3] |= 1 << (s & 7)
        body += bytes([1]) + bitmap
    for f in freqs:
        f = max(0, f)
        while True:  # LEB128
            byte = f & 0x7F
            f >>= 7
            body.append(byte | (0x80 if f else 0))
            if not f:
                break
    if fdp.ConsumeProbability() < 0.05:
        body = body[: fdp.ConsumeIntInRange(0, len(body))]
    return bytes(body), symbols, freqs


def _rans_payload(fdp: atheris.FuzzedDataProvider, count: int) -> bytes:
    states = []
    for _ in range(LANES):
        if fdp.ConsumeProbability() < 0.9:
            states.append(fdp.ConsumeIntInRange(1 << 15, (1 << 31) - 1))
        else:
            states.append(fdp.PickValueInList([0, (1 << 15) - 1, 1 << 31, 0xFFFFFFFF, 1 << 15]))
    if fdp.ConsumeProbability() < 0.3:
        states = [1 << 15] * LANES  # the final state: an exact stream of words decodes to the end
    words = _fill(fdp, 2 * fdp.ConsumeIntInRange(0, count // 2 + 80) + (1 if fdp.ConsumeProbability() < 0.05 else 0))
    return struct.pack(f"<{LANES}I", *states) + words


def _merge_reference(planes: list[bytes], count: int, width: int, rotate: int) -> bytes:
    """Elements from byte planes (plane 0 = most significant), rotated right: docs/format.md."""
    value = np.zeros(count, np.uint64)
    for k, plane in enumerate(planes):
        value |= np.frombuffer(plane, np.uint8).astype(np.uint64) << np.uint64(8 * (width - 1 - k))
    bits = np.uint64(8 * width)
    if rotate and width > 1:
        mask = np.uint64((1 << (8 * width)) - 1)
        value = ((value >> np.uint64(1)) | (value << (bits - np.uint64(1)))) & mask
    return value.astype(f"<u{width}").tobytes()


def op_decode_built(fdp: atheris.FuzzedDataProvider) -> None:
    width, rotate = fdp.PickValueInList(WIDTHS), fdp.ConsumeIntInRange(0, 1)
    chunk_elements = fdp.ConsumeIntInRange(1, 20000)
    chunks_wanted = fdp.ConsumeIntInRange(1, 3)
    elements = fdp.ConsumeIntInRange((chunks_wanted - 1) * chunk_elements + 1, chunks_wanted * chunk_elements)
    source = bytearray()
    table = []
    expected = bytearray()
    checkable = True
    for c in range(chunks_wanted):
        count = min(chunk_elements, elements - c * chunk_elements)
        directory = bytearray([width if fdp.ConsumeProbability() < 0.97 else fdp.ConsumeIntInRange(0, 255)])
        bodies = bytearray()
        planes = []
        for _ in range(width):
            mode = fdp.ConsumeIntInRange(0, 2) if fdp.ConsumeProbability() < 0.97 else fdp.ConsumeIntInRange(3, 255)
            if mode == 0:
                body = _fill(fdp, count)
                planes.append(body)
            elif mode == 1:
                body = fdp.ConsumeBytes(1) or b"\x00"
                planes.append(body * count)
            elif mode == 2:
                table_bytes, _, _ = _frequency_table(fdp)
                body = table_bytes + _rans_payload(fdp, count)
                checkable = False
            else:
                body = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))
                checkable = False
            length = len(body)
            if fdp.ConsumeProbability() < 0.05:
                length = fdp.PickValueInList([length + 1, max(0, length - 1), 0, 0xFFFFFFFF, 1 << 31])
                checkable = False
            directory += struct.pack("<BI", mode, length)
            bodies += body
        chunk = bytes(directory + bodies)
        if fdp.ConsumeProbability() < 0.03:
            chunk += b"\x00"
            checkable = False
        if directory[0] != width:
            checkable = False
        table.append((len(source), len(chunk), _native.crc32c(chunk)))
        source += chunk
        if checkable:
            expected += _merge_reference(planes, count, width, rotate)
    out = bytearray(elements * width)
    ok = _decode([(bytes(source), table, out, width, rotate, chunk_elements)], fdp.ConsumeIntInRange(1, 2),
                 fdp.ConsumeBool())
    if checkable:
        assert ok, "a chunk of raw and constant planes was refused"
        assert out == expected, "raw/constant planes merged wrongly"


# -- 2 and 3: the encoder's own chunks ------------------------------------------------------------


def _encode_batch(fdp: atheris.FuzzedDataProvider) -> tuple[list, list[np.ndarray]]:
    jobs, arrays = [], []
    for _ in range(fdp.ConsumeIntInRange(1, 3)):
        width, rotate = fdp.PickValueInList(WIDTHS), fdp.ConsumeIntInRange(0, 1)
        chunk_elements = fdp.ConsumeIntInRange(1, 20000) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(1, 200)
        elements = fdp.ConsumeIntInRange(0, 3 * min(chunk_elements, 8000) + 1)
        context = width >= 2 and fdp.ConsumeBool()  # the max level's plane 1 given plane 0 (mode 3)
        data = _weights(fdp, elements, width) if context and fdp.ConsumeBool() else _shaped(fdp, elements * width)
        jobs.append((data, width, rotate, chunk_elements, context))
        arrays.append(data)
    return jobs, arrays


def op_round_trip(fdp: atheris.FuzzedDataProvider) -> None:
    jobs, arrays = _encode_batch(fdp)
    threads = fdp.ConsumeIntInRange(1, 2)
    if fdp.ConsumeBool():
        encoded = _native.encode_tensors(jobs, threads)
    else:
        encoder = _native.StreamingEncoder(threads)
        encoder.encode(list(reversed(jobs)))  # buffers reused by the call that counts
        encoded = encoder.encode(jobs)
    decode_jobs, outs = [], []
    for (data, width, rotate, chunk_elements, context), (chunks, crcs, histograms, bound) in zip(jobs, encoded,
                                                                                                 strict=True):
        assert len(chunks) == (-(-(data.size // width) // chunk_elements) if data.size else 0)
        assert histograms.shape == (width, 256)
        assert (histograms.sum(axis=1) == data.size // width).all()
        assert (histograms == _native.plane_histograms(data, width, rotate)).all()
        assert bound >= 0
        source = b"".join(bytes(c) for c in chunks)
        table, offset = [], 0
        for chunk, crc in zip(chunks, crcs, strict=True):
            assert crc == _native.crc32c(chunk)
            table.append((offset, len(bytes(chunk)), crc))
            offset += len(bytes(chunk))
        out = np.empty(data.size, np.uint8)
        outs.append(out)
        decode_jobs.append((source, table, out, width, rotate, chunk_elements, context))
    _native.decode_tensors(decode_jobs, threads, True)  # must not raise
    for data, out in zip(arrays, outs, strict=True):
        assert np.array_equal(data, out), "round trip changed the data"


def op_decode_mutated(fdp: atheris.FuzzedDataProvider) -> None:
    jobs, _ = _encode_batch(fdp)
    encoded = _native.encode_tensors(jobs, 1)
    decode_jobs = []
    for (data, width, rotate, chunk_elements, context), (chunks, _, _, _) in zip(jobs, encoded, strict=True):
        pieces = [bytearray(bytes(c)) for c in chunks]
        for _ in range(fdp.ConsumeIntInRange(0, 6)):
            if not pieces:
                break
            piece = pieces[fdp.ConsumeIntInRange(0, len(pieces) - 1)]
            action = fdp.ConsumeIntInRange(0, 3)
            at = fdp.ConsumeIntInRange(0, len(piece))
            if action == 0 and at < len(piece):
                piece[at] ^= 1 << fdp.ConsumeIntInRange(0, 7)
            elif action == 1 and at < len(piece):
                piece[at] = fdp.ConsumeInt(1) & 0xFF
            elif action == 2:
                piece[at:at] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 4)) or b"\x00"
            else:
                del piece[at : at + fdp.ConsumeIntInRange(1, 4)]
        source = b"".join(pieces)
        table, offset = [], 0
        for piece in pieces:
            table.append((offset, len(piece), _native.crc32c(piece)))
            offset += len(piece)
        decode_jobs.append((source, table, np.empty(data.size, np.uint8), width, rotate, chunk_elements, context))
    threads = fdp.ConsumeIntInRange(1, 2)
    if fdp.ConsumeBool():
        _decode(decode_jobs, threads, fdp.ConsumeBool())
    else:
        for job in decode_jobs:
            _decode([job], threads, fdp.ConsumeBool())


# -- 4 to 7 ------------------------------------------------------------------------------------------


def op_crc32c(fdp: atheris.FuzzedDataProvider) -> None:
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 3000))
    if fdp.ConsumeBool():
        data = _fill(fdp, fdp.ConsumeIntInRange(0, 70000)) + data
    previous = fdp.ConsumeInt(4) & 0xFFFFFFFF
    skew = fdp.ConsumeIntInRange(0, 15)
    buffer = memoryview(bytes(skew) + data)[skew:]  # every alignment
    whole = _native.crc32c(buffer, previous)
    if len(data) <= 4096:
        assert whole == tzip_image.crc32c(data, previous), "crc32c differs from the reference"
    cut = fdp.ConsumeIntInRange(0, len(data))
    assert _native.crc32c(buffer[cut:], _native.crc32c(buffer[:cut], previous)) == whole, "crc32c in pieces"
    assert _native.crc32c(np.frombuffer(data, np.uint8), previous) == whole


def op_delta(fdp: atheris.FuzzedDataProvider) -> None:
    width = _width(fdp)
    mode = fdp.ConsumeIntInRange(0, 1) if fdp.ConsumeProbability() < 0.95 else fdp.ConsumeIntInRange(-1, 3)
    is_float, threads = fdp.ConsumeBool(), fdp.ConsumeIntInRange(1, 2)
    n = fdp.ConsumeIntInRange(0, 600) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 300000)
    size = n * max(1, width)
    a, base = _shaped(fdp, size), _shaped(fdp, size)
    if fdp.ConsumeProbability() < 0.05:
        base = base[: max(0, size - 1)]
    out = np.empty(size + (1 if fdp.ConsumeProbability() < 0.05 else 0), np.uint8)
    try:
        _native.delta_residual(a, base, out, width, mode, is_float, threads)
    except CLEAN:
        return
    assert width in WIDTHS and mode in (0, 1) and a.size == base.size == out.size
    if mode == 0:
        expected = (a.view(f"<u{width}") ^ base.view(f"<u{width}")).view(np.uint8)
        assert np.array_equal(out, expected), "xor residual differs from the reference"
    _native.delta_restore(out, base, width, mode, is_float, threads)
    assert np.array_equal(out, a), "delta_restore did not undo delta_residual"


def op_plane_histograms(fdp: atheris.FuzzedDataProvider) -> None:
    width, rotate = _width(fdp), _rotate(fdp)
    data = _shaped(fdp, fdp.ConsumeIntInRange(0, 3000) if fdp.ConsumeBool() else fdp.ConsumeIntInRange(0, 600000))
    try:
        histograms = _native.plane_histograms(data, width, rotate)
    except CLEAN:
        return
    assert width in WIDTHS and rotate in (0, 1) and data.size % width == 0
    assert histograms.shape == (width, 256)
    assert (histograms.sum(axis=1) == data.size // width).all()
    if rotate == 0 or width == 1:  # plane k is byte (width - 1 - k) of each element
        view = data.reshape(-1, width)
        for k in range(width):
            assert np.array_equal(histograms[k], np.bincount(view[:, width - 1 - k], minlength=256))


def _odd_buffer(fdp: atheris.FuzzedDataProvider, size: int):
    choice = fdp.ConsumeIntInRange(0, 8)
    raw = _fill(fdp, size)
    if choice == 0:
        return raw  # read-only
    if choice == 1:
        return memoryview(bytearray(raw + raw))[::2]  # not contiguous
    if choice == 2:
        return np.frombuffer(bytearray(raw + b"\x00" * (-len(raw) % 4)), np.float32)  # another dtype
    if choice == 3:
        return np.zeros((3, max(1, size)), np.uint8)[:, :1]  # a strided column
    if choice == 4:
        return fdp.PickValueInList([None, 3, "text", [1, 2], 1.5])
    if choice == 5:
        return np.frombuffer(raw, np.uint8)  # read-only array
    return bytearray(raw)


def op_buffers(fdp: atheris.FuzzedDataProvider) -> None:
    which = fdp.ConsumeIntInRange(0, 5)
    size = fdp.ConsumeIntInRange(0, 64)
    number = fdp.PickValueInList([0, 1, 2, 4, 8, -1, 1 << 31, 1 << 63, -(1 << 63), 1 << 64, 3])
    try:
        if which == 0:
            _native.decode_tensors([(_odd_buffer(fdp, size), [(0, size, 0)], _odd_buffer(fdp, size), 1, 0,
                                     max(1, size))], fdp.ConsumeIntInRange(-1, 3), False)
        elif which == 1:
            table = [(number, fdp.PickValueInList([0, 1, -1, 1 << 64, 1 << 63]), fdp.ConsumeInt(5))]
            _native.decode_tensors([(b"x" * size, table, bytearray(size * 4), 4, 0, number)], 1, False)
        elif which == 2:
            _native.crc32c(_odd_buffer(fdp, size), number)
        elif which == 3:
            _native.delta_restore(_odd_buffer(fdp, size), _odd_buffer(fdp, size), number, fdp.ConsumeIntInRange(-1, 2),
                                  fdp.ConsumeBool(), fdp.ConsumeIntInRange(-1, 2))
        elif which == 4:
            _native.plane_histograms(_odd_buffer(fdp, size), number, fdp.ConsumeIntInRange(-1, 2))
        else:
            _native.encode_tensors([(_odd_buffer(fdp, size), number, 0, fdp.ConsumeIntInRange(-1, 70))],
                                   fdp.ConsumeIntInRange(-1, 2))
    except (*CLEAN, OverflowError):  # OverflowError: a Python int too large for the C++ type
        pass


def op_grid(fdp: atheris.FuzzedDataProvider) -> None:
    """The error-bounded codec's grid kernels: any values, step, stride, chunking and channel
    offsets encode without a crash and decode back to the grid values the encoder measured its error on."""
    value_bytes = 8 if fdp.ConsumeBool() else 4
    n = fdp.ConsumeIntInRange(0, 3000)
    values = np.frombuffer(_fill(fdp, n * value_bytes), np.float64 if value_bytes == 8 else np.float32)
    step = fdp.ConsumeFloat() if fdp.ConsumeProbability() < 0.2 else 10.0 ** fdp.ConsumeIntInRange(-12, 6)
    stride = fdp.ConsumeIntInRange(0, 40)
    chunk = fdp.ConsumeIntInRange(0, 500) * (stride or 1) if fdp.ConsumeProbability() < 0.9 else \
        fdp.ConsumeIntInRange(0, 600)
    threads = fdp.ConsumeIntInRange(1, 3)
    period = fdp.ConsumeIntInRange(0, 50) if fdp.ConsumeBool() else 0
    offsets = np.array([fdp.ConsumeIntInRange(-(1 << 31), (1 << 31) - 1) if fdp.ConsumeProbability() < 0.1
                        else fdp.ConsumeIntInRange(-1000, 1000) for _ in range(period)], dtype=np.int32)
    codes = np.empty(values.size, np.uint32)
    try:
        error, largest, finite = _native.grid_encode(values, value_bytes, step, stride, chunk, offsets, codes,
                                                     threads)
    except CLEAN:
        return
    assert chunk >= 1 and step > 0 and (stride == 0 or chunk % stride == 0)
    assert all(-(1 << 30) < int(v) < 1 << 30 for v in offsets)
    if not finite or not math.isfinite(error):
        return
    assert largest == int(codes.max(initial=0))
    out = np.empty(values.size, values.dtype)
    _native.grid_decode(codes, 4, step, stride, chunk, offsets, out, 1 if value_bytes == 8 else 0, threads)
    with np.errstate(invalid="ignore", over="ignore"):
        measured = float(np.abs(out.astype(np.float64) - values.astype(np.float64)).max(initial=0.0))
    assert measured == error, "grid_decode disagrees with the error grid_encode measured"


OPERATIONS = [op_decode_raw, op_decode_built, op_round_trip, op_decode_mutated, op_crc32c, op_delta,
              op_plane_histograms, op_buffers, op_grid]


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris' name)
    if not data:
        return
    fdp = atheris.FuzzedDataProvider(data[1:])
    OPERATIONS[data[0] % len(OPERATIONS)](fdp)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
