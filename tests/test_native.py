"""The native core (tensorzip._native) on its own: CRC-32C, chunk coding, and the
checks the decoder makes on what it is handed."""

from __future__ import annotations

import numpy as np
import pytest

from tensorzip import _native
from tensorzip.codecs import order0_bound_bytes

from .conftest import chunk_modes, flip

WIDTHS = (1, 2, 4, 8)
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def normalize(item):
    """(payload, chunk lengths, crc32cs, histograms) from one encode_tensors result
    ([chunk buffers], crcs, histograms, order-0 bound), checking the bound on the way."""
    chunks, crcs, histograms, bound = item
    assert bound == pytest.approx(order0_bound_bytes(histograms), rel=1e-12, abs=1e-9)
    chunks = [bytes(memoryview(c).cast("B")) for c in chunks]
    return b"".join(chunks), [len(c) for c in chunks], list(crcs), histograms


def encode(data: np.ndarray, width: int, rotate: int, chunk_elements: int, threads: int = 0):
    (item,) = _native.encode_tensors([(data, width, rotate, chunk_elements)], threads)
    return normalize(item)


def table_of(lengths, crcs):
    table, offset = [], 0
    for length, crc in zip(lengths, crcs, strict=True):
        table.append((offset, length, crc))
        offset += length
    return table


def decode(payload, table, nbytes, width, rotate, chunk_elements, verify=True, threads=0):
    out = np.zeros(nbytes, dtype=np.uint8)
    _native.decode_tensors([(payload, table, out, width, rotate, chunk_elements)], threads, verify)
    return out


def low_entropy_bytes(rng, nbytes):
    return (rng.geometric(0.3, size=nbytes) % 256).astype(np.uint8)


def round_trip(data, width, rotate, chunk_elements):
    payload, lengths, crcs, _ = encode(data, width, rotate, chunk_elements)
    assert len(lengths) == -(-(data.size // width) // chunk_elements)
    for (offset, length, crc) in table_of(lengths, crcs):
        assert _native.crc32c(payload[offset : offset + length]) == crc
    back = decode(payload, table_of(lengths, crcs), data.size, width, rotate, chunk_elements)
    assert back.tobytes() == data.tobytes()
    return payload, lengths


# -- crc32c ------------------------------------------------------------------------


def test_crc32c_check_value():
    assert _native.crc32c(b"123456789") == 0xE3069283
    assert _native.crc32c(b"") == 0


def test_crc32c_incremental_and_buffer_kinds(rng):
    data = rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    whole = _native.crc32c(data)
    for cut in (0, 1, 7, 64, 4097, len(data)):
        assert _native.crc32c(data[cut:], _native.crc32c(data[:cut])) == whole
    assert _native.crc32c(bytearray(data)) == whole
    assert _native.crc32c(memoryview(data)) == whole
    assert _native.crc32c(np.frombuffer(data, np.uint8).view(np.uint16)) == whole
    # iSCSI test vector (RFC 3720): 32 bytes of zeros
    assert _native.crc32c(bytes(32)) == 0x8A9136AA
    assert _native.crc32c(b"\xff" * 32) == 0x62A8AB43


# -- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("rotate", [0, 1])
@pytest.mark.parametrize("width", WIDTHS)
def test_round_trip_small_sizes(width, rotate, rng):
    for count in range(0, 301):
        for data in (low_entropy_bytes(rng, count * width),
                     rng.integers(0, 256, count * width, dtype=np.uint8)):
            round_trip(data, width, rotate, chunk_elements=1 << 16)
        if count % 37 == 0:
            round_trip(low_entropy_bytes(rng, count * width), width, rotate, chunk_elements=7)


BOUNDARY_SIZES = sorted({
    *(m * 32 + d for m in (1, 2, 3, 10) for d in (-1, 0, 1)),
    *(m * 8192 + d for m in (1, 2, 3) for d in (-33, -32, -1, 0, 1, 31, 32)),
    40000,
})


@pytest.mark.parametrize("rotate", [0, 1])
@pytest.mark.parametrize("width", WIDTHS)
def test_round_trip_block_boundaries(width, rotate, rng):
    for count in BOUNDARY_SIZES:
        data = low_entropy_bytes(rng, count * width)
        payload, _ = round_trip(data, width, rotate, chunk_elements=_native.MAX_CHUNK_BYTES // width)
        if count >= 1000:  # below that, 128 bytes of rANS state cost more than they save
            assert chunk_modes(payload) == [2] * width  # every plane rANS-coded: the block logic is exercised
    # chunk boundaries at block-unfriendly places, in one call
    data = low_entropy_bytes(rng, 40000 * width)
    for chunk_elements in (8191, 8192, 8193, 12345):
        round_trip(data, width, rotate, chunk_elements)


def test_mixed_plane_modes_in_one_chunk(rng):
    count = 20000
    values = (rng.geometric(0.2, count).astype(np.uint32) << 8) | rng.integers(0, 256, count, dtype=np.uint32)
    values |= np.uint32(0x42 << 24)  # top byte constant, then low-entropy bytes, then a random one
    data = values.view(np.uint8)
    payload, _ = round_trip(data, 4, 0, count)
    modes = chunk_modes(payload)
    assert modes[0] == 1  # constant
    assert modes[2] == 2  # rANS
    assert modes[3] == 0  # raw
    round_trip(data, 4, 1, 999)


def test_batches_and_threads_give_the_same_bytes(rng):
    layouts = [(5000, 4, 1, 700), (0, 2, 0, 10), (1, 8, 1, 1), (33333, 2, 1, 4096), (77, 1, 0, 8)]
    jobs = [(low_entropy_bytes(rng, n * w), w, r, c) for n, w, r, c in layouts]
    reference = [encode(*job, threads=1)[0] for job in jobs]
    for threads in (0, 1, 2, 8):
        batch = [normalize(item) for item in _native.encode_tensors(jobs, threads)]
        assert [payload for payload, *_ in batch] == reference
    outs = [np.zeros_like(job[0]) for job in jobs]
    decode_jobs = []
    encoded = [normalize(item) for item in _native.encode_tensors(jobs, 2)]
    for job, (payload, lengths, crcs, _), out in zip(jobs, encoded, outs, strict=True):
        decode_jobs.append((payload, table_of(lengths, crcs), out, job[1], job[2], job[3]))
    _native.decode_tensors(decode_jobs, 4, True)
    for job, out in zip(jobs, outs, strict=True):
        assert out.tobytes() == job[0].tobytes()


# -- sizes -------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_random_data_falls_back_to_raw(width, rng):
    for count, chunk_elements in [(1, 64), (100, 64), (5000, 1000), (70_000, 1 << 19)]:
        data = rng.integers(0, 256, count * width, dtype=np.uint8)
        payload, lengths = round_trip(data, width, 1, chunk_elements)
        directory = 1 + 5 * width
        assert len(payload) <= data.size + len(lengths) * directory
        for offset, length, _ in table_of(lengths, lengths):
            if count == 1:
                continue  # a one-element plane is a constant
            assert chunk_modes(payload[offset : offset + length]) == [0] * width


@pytest.mark.parametrize("width", WIDTHS)
def test_constant_plane_costs_one_byte(width, rng):
    for count in (1, 2, 31, 1000, 100_000):
        value = rng.integers(0, 256, width, dtype=np.uint8)
        data = np.tile(value, count)
        payload, lengths = round_trip(data, width, 0, _native.MAX_CHUNK_BYTES // width)
        assert lengths == [1 + 5 * width + width]  # directory + one byte per plane
        assert chunk_modes(payload) == [1] * width
        assert [payload[2 + 5 * k : 6 + 5 * k] for k in range(width)] == [(1).to_bytes(4, "little")] * width


def test_low_entropy_compresses(rng):
    data = (rng.standard_normal(100_000) * 0.02).astype(np.float32).view(np.uint8)
    payload, _ = round_trip(data, 4, 1, 1 << 19)
    assert len(payload) < 0.9 * data.size


# -- plane histograms --------------------------------------------------------------


def numpy_planes(data: np.ndarray, width: int, rotate: int) -> list[np.ndarray]:
    values = data.view(UINT[width]).astype(np.uint64)
    bits = 8 * width
    if rotate and width > 1:  # one-byte elements are kept plain (see csrc/byte_planes.cpp)
        mask = np.uint64((1 << bits) - 1)
        values = ((values << np.uint64(rotate)) | (values >> np.uint64(bits - rotate))) & mask
    shifts = [np.uint64(8 * (width - 1 - k)) for k in range(width)]
    return [((values >> shift) & np.uint64(0xFF)).astype(np.uint8) for shift in shifts]


@pytest.mark.parametrize("rotate", [0, 1])
@pytest.mark.parametrize("width", WIDTHS)
def test_plane_histograms_match_numpy(width, rotate, rng):
    for count in (0, 1, 5, 1000, 300_000):
        data = np.concatenate([rng.integers(0, 256, count * width // 2, dtype=np.uint8),
                               low_entropy_bytes(rng, count * width - count * width // 2)])
        histograms = _native.plane_histograms(data, width, rotate)
        assert histograms.shape == (width, 256)
        assert histograms.dtype == np.uint64
        for k, plane in enumerate(numpy_planes(data, width, rotate)):
            np.testing.assert_array_equal(histograms[k], np.bincount(plane, minlength=256))


def test_plane_zero_is_the_most_significant_byte():
    # float32 1.0 = 0x3F800000; rotated left by one: 0x7F000000
    one = np.array([1.0], dtype=np.float32).view(np.uint8)
    plain = _native.plane_histograms(one, 4, 0)
    rotated = _native.plane_histograms(one, 4, 1)
    assert [int(np.argmax(plain[k])) for k in range(4)] == [0x3F, 0x80, 0x00, 0x00]
    assert [int(np.argmax(rotated[k])) for k in range(4)] == [0x7F, 0x00, 0x00, 0x00]
    # -1.0 = 0xBF800000 -> 0x7F000001: the sign lands in the lowest bit
    minus = np.array([-1.0], dtype=np.float32).view(np.uint8)
    assert [int(np.argmax(_native.plane_histograms(minus, 4, 1)[k])) for k in range(4)] == [0x7F, 0, 0, 1]


def test_encoder_histograms_match_plane_histograms(rng):
    data = low_entropy_bytes(rng, 4 * 10_000)
    _, _, _, histograms = encode(data, 4, 1, 999)
    np.testing.assert_array_equal(histograms, _native.plane_histograms(data, 4, 1))


def test_plane_histograms_rejects_bad_layouts():
    with pytest.raises(ValueError):
        _native.plane_histograms(bytes(6), 4, 0)
    with pytest.raises(ValueError):
        _native.plane_histograms(bytes(6), 3, 0)
    with pytest.raises(ValueError):
        _native.plane_histograms(bytes(8), 4, 2)


# -- decoder checks ----------------------------------------------------------------


@pytest.fixture
def coded(rng):
    """A 3-chunk, rANS-coded, 2-byte-wide tensor: (data, payload, table)."""
    data = low_entropy_bytes(rng, 2 * 1500)
    payload, lengths, crcs, _ = encode(data, 2, 1, 500)
    assert chunk_modes(payload) == [2, 2]
    return data, payload, table_of(lengths, crcs)


def test_decode_rejects_wrong_chunk_count(coded):
    data, payload, table = coded
    for wrong in (table[:2], table + [table[-1]], []):
        with pytest.raises(_native.ChunkError, match="chunks"):
            decode(payload, wrong, data.size, 2, 1, 500)


def test_decode_rejects_chunks_outside_the_source(coded):
    data, payload, table = coded
    offset, length, crc = table[2]
    for bad in [(offset, length + 1, crc), (len(payload) + 1, 0, crc), (offset + 1, length, crc),
                (2**63, 10, crc), (10, 2**64 - 5, crc)]:
        with pytest.raises(_native.ChunkError) as info:
            decode(payload, [*table[:2], bad], data.size, 2, 1, 500)
        message, job, chunk = info.value.args
        assert "outside" in message
        assert (job, chunk) == (0, 2)


def test_decode_rejects_bad_output_length(coded):
    data, payload, table = coded
    with pytest.raises(_native.ChunkError, match="multiple"):
        decode(payload, table, data.size - 1, 2, 1, 500)


def test_decode_rejects_bad_layouts(coded):
    data, payload, table = coded
    with pytest.raises(ValueError):
        decode(payload, table, data.size, 3, 1, 500)
    with pytest.raises(ValueError):
        decode(payload, table, data.size, 2, 2, 500)
    with pytest.raises(ValueError):
        decode(payload, table, data.size, 2, 1, 0)
    with pytest.raises(ValueError):
        encode(bytes(6), 3, 0, 10)
    with pytest.raises(ValueError):
        encode(bytes(6), 2, 2, 10)
    with pytest.raises(ValueError):
        encode(bytes(5), 2, 0, 10)  # not a multiple of the width
    with pytest.raises(ValueError):
        encode(bytes(8), 8, 0, _native.MAX_CHUNK_BYTES)  # 32 MiB chunks


def test_decode_names_job_and_chunk_of_a_checksum_failure(coded, rng):
    data, payload, table = coded
    other = low_entropy_bytes(rng, 4 * 50)
    other_payload, lengths, crcs, _ = encode(other, 4, 0, 10)
    for chunk in range(3):
        offset, length, _ = table[chunk]
        damaged = flip(payload, offset + length // 2)
        jobs = [
            (other_payload, table_of(lengths, crcs), np.zeros_like(other), 4, 0, 10),
            (damaged, table, np.zeros_like(data), 2, 1, 500),
        ]
        with pytest.raises(_native.ChunkError) as info:
            _native.decode_tensors(jobs, 2, True)
        message, job, where = info.value.args
        assert "checksum" in message.lower()
        assert (job, where) == (1, chunk)
        assert isinstance(info.value, ValueError)


def test_decode_with_checksums_rejects_every_flip(coded):
    data, payload, table = coded
    for index in range(len(payload)):
        with pytest.raises(_native.ChunkError):
            decode(flip(payload, index, 0x10), table, data.size, 2, 1, 500, verify=True)


def test_decode_without_checksums_never_crashes(rng):
    """Unverified decoding of flipped rANS chunks raises (mostly) or returns, never reads out of bounds."""
    count, width = 600, 2
    data = low_entropy_bytes(rng, count * width)
    payload, lengths, crcs, _ = encode(data, width, 0, count)
    assert chunk_modes(payload) == [2] * width
    raised = returned = 0
    for index in range(len(payload)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = flip(payload, index, mask)
            try:
                decode(damaged, [(0, len(damaged), 0)], data.size, width, 0, count, verify=False)
            except _native.ChunkError as error:
                assert len(error.args) == 3
                raised += 1
            else:
                returned += 1
    total = raised + returned
    assert total == 3 * len(payload)
    assert raised >= 0.95 * total, f"only {raised} of {total} single-byte flips were detected without CRCs"


@pytest.mark.parametrize("mode", ["raw", "constant", "rans"])
def test_decode_without_checksums_rejects_truncation(mode, rng):
    count, width = 500, 4
    data = {
        "raw": rng.integers(0, 256, count * width, dtype=np.uint8),
        "constant": np.full(count * width, 7, dtype=np.uint8),
        "rans": low_entropy_bytes(rng, count * width),
    }[mode]
    payload, _, _, _ = encode(data, width, 0, count)
    for cut in range(0, len(payload)):
        with pytest.raises(_native.ChunkError):
            decode(payload[:cut], [(0, cut, 0)], data.size, width, 0, count, verify=False)
    with pytest.raises(_native.ChunkError):  # one byte too many
        decode(payload + b"\0", [(0, len(payload) + 1, 0)], data.size, width, 0, count, verify=False)


def test_decode_rejects_wrong_element_count_for_a_chunk(rng):
    data = low_entropy_bytes(rng, 2 * 1024)
    payload, lengths, crcs, _ = encode(data, 2, 0, 1024)
    assert chunk_modes(payload) == [2, 2]
    # the same chunk presented as holding fewer or more elements must not decode
    for elements in (1023, 1025, 992, 1056):
        with pytest.raises(_native.ChunkError):
            decode(payload, [(0, lengths[0], crcs[0])], 2 * elements, 2, 0, 1 << 11)


def test_chunk_error_and_corrupt_stream_error_are_value_errors():
    assert issubclass(_native.ChunkError, ValueError)
    assert issubclass(_native.CorruptStreamError, ValueError)


def test_fortran_ordered_buffers_are_refused_not_read_column_by_column():
    """Every kernel reads row-major bytes: a Fortran-ordered array would be coded (or
    scored) in the wrong order without a word."""
    from tensorzip import _native

    matrix = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    with pytest.raises((BufferError, ValueError), match="contiguous"):
        _native.crc32c(matrix)
    assert _native.crc32c(np.ascontiguousarray(matrix)) == _native.crc32c(np.ascontiguousarray(matrix).tobytes())
