"""What is in a checkpoint's tensors, tensor by tensor: the entropy bounds, what
tensorzip achieves against them, and the bit-level facts behind both.

The achieved size is real: the checkpoint is coded by the same writer as
``tensorzip compress`` (into a sink that only counts bytes), or, for a .tzip, read
from its header. Bounds and exponent histograms of tensors larger than
``exact_elements`` are computed on a seeded sample of whole rows (or runs, for
1-D tensors), so a large checkpoint stays fast; special-value counts are exact.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import dtypes
from ..codecs.narrowed_float import hides_narrower
from ..container import TzipReader, TzipWriter
from ..container.header import TensorEntry
from ..container.kinds import Kind, identify, refuse_layers
from ..container.records import original_size
from ..files import open_checkpoint
from ..writing.plan import add_tensors
from .entropy import plane_bits, tensor_bounds

DEFAULT_EXACT_ELEMENTS = 1 << 22
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class FloatLayout:
    exponent_bits: int
    mantissa_bits: int

    @property
    def bias(self) -> int:
        return (1 << (self.exponent_bits - 1)) - 1


FLOAT_LAYOUTS = {
    "float64": FloatLayout(11, 52), "float32": FloatLayout(8, 23), "bfloat16": FloatLayout(8, 7),
    "float16": FloatLayout(5, 10), "float8_e4m3fn": FloatLayout(4, 3), "float8_e5m2": FloatLayout(5, 2),
}


def _bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array).reshape(-1).view(f"<u{array.dtype.itemsize}")


def special_values(array: np.ndarray, spec: dtypes.DTypeSpec) -> dict[str, float]:
    """Fractions of zeros, denormals, NaNs and infinities, from the bit patterns (exact)."""
    n = max(1, array.size)
    layout = FLOAT_LAYOUTS.get(spec.name)
    if layout is None:
        zeros = int(np.count_nonzero(np.asarray(array).reshape(-1) == 0))
        return {"zeros": zeros / n, "denormals": 0.0, "nans": 0.0, "infs": 0.0}
    bits = _bits(array)
    magnitude = bits & np.array((1 << (8 * spec.itemsize - 1)) - 1, bits.dtype)
    exponent = magnitude >> np.array(layout.mantissa_bits, bits.dtype)
    top = (1 << layout.exponent_bits) - 1
    mantissa = magnitude & np.array((1 << layout.mantissa_bits) - 1, bits.dtype)
    zeros = np.count_nonzero(magnitude == 0)
    denormals = np.count_nonzero((exponent == 0) & (mantissa != 0))
    if spec.name == "float8_e4m3fn":  # no infinities; NaN is S.1111.111
        nans, infs = np.count_nonzero(magnitude == 0x7F), 0
    else:
        nans = np.count_nonzero((exponent == top) & (mantissa != 0))
        infs = np.count_nonzero((exponent == top) & (mantissa == 0))
    return {"zeros": zeros / n, "denormals": denormals / n, "nans": nans / n, "infs": infs / n}


def exponent_histogram(array: np.ndarray, spec: dtypes.DTypeSpec) -> dict[str, list[int]] | None:
    """Counts of unbiased binary exponents (the raw field minus the bias; zeros and
    denormals share the lowest), or None for non-float dtypes."""
    layout = FLOAT_LAYOUTS.get(spec.name)
    if layout is None:
        return None
    bits = _bits(array)
    field = (bits >> np.array(layout.mantissa_bits, bits.dtype)) & np.array((1 << layout.exponent_bits) - 1,
                                                                           bits.dtype)
    counts = np.bincount(field.astype(np.int64), minlength=1 << layout.exponent_bits)
    present = np.flatnonzero(counts)
    return {"exponent": [int(e) - layout.bias for e in present], "count": [int(c) for c in counts[present]]}


def sample_rows(array: np.ndarray, limit: int, seed: int = 0) -> np.ndarray:
    """At most ``limit`` elements: whole rows chosen uniformly (seeded, in order) for
    matrices, so row-wise context models still see rows; evenly spread runs otherwise."""
    if array.size <= limit:
        return array
    if array.ndim >= 2 and array.shape[-1] <= limit:
        rows = array.reshape(-1, array.shape[-1])
        keep = np.sort(np.random.default_rng(seed).choice(rows.shape[0], limit // rows.shape[1], replace=False))
        return rows[keep]
    flat = array.reshape(-1)
    runs = max(1, min(64, limit))
    run = limit // runs
    starts = np.linspace(0, flat.size - run, runs).astype(np.int64)
    return np.concatenate([flat[s:s + run] for s in starts])


def hidden_narrower(array: np.ndarray) -> str | None:
    """The narrower float every value of ``array`` is exactly: "bfloat16" for a float32
    tensor whose low 16 bits are all zero (a widened bfloat16), else what the
    ``narrowed_float`` codec would store it as ("float16" in float32, "float32" in
    float64), else None."""
    if array.size == 0:
        return None
    if array.dtype == np.float32 and not np.any(_bits(array) & np.uint32(0xFFFF)):
        return "bfloat16"
    return hides_narrower(array)


def tensor_profile(name: str, array: np.ndarray, exact_elements: int = DEFAULT_EXACT_ELEMENTS) -> dict[str, Any]:
    """Everything the report shows about one tensor except its achieved size."""
    spec = dtypes.by_numpy(array.dtype)
    sample = sample_rows(array, exact_elements)
    n = max(1, sample.size)
    bounds = tensor_bounds(np.ascontiguousarray(sample))
    return {
        "name": name, "dtype": spec.name, "shape": list(array.shape), "bytes": int(array.nbytes),
        "plane_bits": [b / n for b in plane_bits(np.ascontiguousarray(sample))],
        "order0_bits": 8 * bounds.order0_bytes / n, "context_bits": 8 * bounds.context_bytes / n,
        "exponent_histogram": exponent_histogram(sample, spec),
        **special_values(array, spec),
        "hidden": hidden_narrower(array),
        "sampled": sample.size < array.size,
    }


# A stored tensor declaring more than this is profiled piece by piece (runs of whole chunks), so
# analyze holds at most one piece whatever size a file declares.
PROFILE_PIECE_BYTES = 64 * 1024 * 1024


def profile_in_pieces(reader: TzipReader, entry: TensorEntry, exact_elements: int = DEFAULT_EXACT_ELEMENTS,
                      piece_bytes: int = PROFILE_PIECE_BYTES,
                      progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """``tensor_profile`` of a stored tensor decoded one piece at a time: exact counts (special
    values, hidden narrower type) summed over the pieces; the entropy sample made of evenly
    spread runs of every piece in proportion to its size (runs, not whole rows)."""
    spec = entry.spec
    counts = {"zeros": 0.0, "denormals": 0.0, "nans": 0.0, "infs": 0.0}
    bfloat16 = entry.numel > 0 and spec.name == "float32"
    narrower: set[str | None] = set()
    samples = []
    for piece in reader.pieces(entry, piece_bytes):
        out = np.empty(piece.numel, dtype=spec.numpy_dtype)
        reader.decode_into([(piece, out)])
        for key, fraction in special_values(out, spec).items():
            counts[key] += fraction * out.size
        bfloat16 = bfloat16 and not np.any(_bits(out) & np.uint32(0xFFFF))
        if not bfloat16:
            narrower.add(hides_narrower(out) if out.size else None)
        share = max(1, exact_elements * out.size // max(1, entry.numel))
        samples.append(np.array(sample_rows(out, share)))
        if progress is not None:
            progress(out.nbytes)
        del out
    sample = np.concatenate(samples) if samples else np.zeros(0, spec.numpy_dtype)
    n = max(1, sample.size)
    bounds = tensor_bounds(np.ascontiguousarray(sample))
    hidden = "bfloat16" if bfloat16 else (narrower.pop() if len(narrower) == 1 else None)
    return {
        "name": entry.name, "dtype": spec.name, "shape": list(entry.shape), "bytes": int(entry.nbytes),
        "plane_bits": [b / n for b in plane_bits(np.ascontiguousarray(sample))],
        "order0_bits": 8 * bounds.order0_bytes / n, "context_bits": 8 * bounds.context_bytes / n,
        "exponent_histogram": exponent_histogram(sample, spec),
        **{key: value / max(1, entry.numel) for key, value in counts.items()},
        "hidden": hidden,
        "sampled": sample.size < entry.numel,
    }


class _CountingSink(io.RawIOBase):
    """A seekable stream that keeps nothing: the writer's output size without the output."""

    def __init__(self) -> None:
        self.position = self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        length = memoryview(data).nbytes
        self.position += length
        self.size = max(self.size, self.position)
        return length

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else (self.position + offset if whence == 1 else self.size + offset)
        return self.position

    def tell(self) -> int:
        return self.position


_CHECKPOINT_KINDS = (Kind.SAFETENSORS, Kind.PYTORCH, Kind.MODEL_FOLDER, Kind.CHECKPOINT, Kind.FOLDER_ARCHIVE,
                     Kind.COMPRESSED_FOLDER)


def analyze_checkpoint(path: str | os.PathLike[str], *, threads: int | None = None,
                       exact_elements: int = DEFAULT_EXACT_ELEMENTS,
                       progress: ProgressCallback | None = None) -> dict[str, Any]:
    """The checkpoint part of ``tensorzip analyze``: a JSON-ready dict (see docs/analysis.md)."""
    path = Path(path)
    found = identify(path)
    if found.kind not in _CHECKPOINT_KINDS:
        raise found.refuse("tensorzip analyze (of a checkpoint)")
    compressed = [path] if found.is_tzip_file else sorted(path.rglob("*.tzip")) if path.is_dir() else []
    if found.kind is Kind.COMPRESSED_FOLDER:
        for shard in compressed:
            refuse_layers(TzipReader(shard), "tensorzip analyze").close()
    profiles: list[dict[str, Any]] = []
    done = 0

    def advance(nbytes: int) -> None:
        nonlocal done
        done += nbytes
        if progress is not None:
            progress(done, total)

    total = 0

    def profiled(tensors: Iterator[tuple[str, np.ndarray]], total: int) -> Iterator[tuple[str, np.ndarray]]:
        nonlocal done
        for name, array in tensors:
            profiles.append(tensor_profile(name, array, exact_elements))
            yield name, array
            done += array.nbytes
            if progress is not None:
                progress(done, total)

    if compressed:  # .tzip files (one, or the shards of a compressed folder): what they store, as stored
        achieved, file_bytes, tensor_bytes, achieved_total = {}, 0, 0, 0
        readers = [TzipReader(shard, threads=threads) for shard in compressed]
        try:
            total = sum(e.nbytes for reader in readers for e in reader.header.tensors.values())
            for reader in readers:
                entries = reader.header.tensors
                small: list[str] = []
                for entry in [*entries.values(), None]:  # storage order; the big ones in pieces
                    if entry is not None and entry.nbytes <= PROFILE_PIECE_BYTES:
                        small.append(entry.name)
                        continue
                    for _ in profiled(reader.iter_tensors(small), total):
                        pass
                    small = []
                    if entry is not None:
                        profiles.append(profile_in_pieces(reader, entry, exact_elements, progress=advance))
                achieved |= {name: (0 if e.same_as else e.stored_bytes) for name, e in entries.items()}
                shard_tensors = sum(e.nbytes for e in entries.values())
                file_bytes += original_size(reader.header.source, shard_tensors)
                tensor_bytes += shard_tensors
                achieved_total += reader.size
        finally:
            for reader in readers:
                reader.close()
    else:
        # The same metadata and source record as compress_file writes (one protocol for every
        # input), so the counted size is the size of the file ``tensorzip compress`` makes.
        source = open_checkpoint(path)
        tensor_bytes, file_bytes = source.tensor_bytes, source.size
        sink = _CountingSink()
        with TzipWriter(sink, metadata=source.metadata, source=source.source_record(), threads=threads) as writer:
            add_tensors(writer, profiled(source.tensors(), tensor_bytes), None)
        writer.close()
        achieved = {s.name: s.stored_bytes for s in writer.stats}
        achieved_total = sink.size
    for profile in profiles:
        stored = achieved.get(profile["name"], 0)  # absent: stored once under another name
        profile["achieved_bits"] = 8 * stored / max(1, int(np.prod(profile["shape"])))
        profile["stored_bytes"] = stored
    return _checkpoint_record(path, profiles, file_bytes, tensor_bytes, achieved_total, exact_elements)


def _checkpoint_record(path: Path, profiles: list[dict[str, Any]], file_bytes: int, tensor_bytes: int,
                       achieved_total: int, exact_elements: int) -> dict[str, Any]:
    def total(key: str) -> float:
        return sum(p[key] * int(np.prod(p["shape"])) / 8 for p in profiles)

    order0, payload = total("order0_bits"), sum(p["stored_bytes"] for p in profiles)
    counts: dict[str, int] = {}
    for p in profiles:
        counts[p["dtype"]] = counts.get(p["dtype"], 0) + 1
    sampled = [p for p in profiles if p["sampled"]]
    many = f"{len(sampled)} tensors" if len(sampled) > 1 else "1 tensor"
    notes = [f"{many} over {exact_elements:,} elements: bounds and exponent histograms measured on "
             f"a seeded sample of {exact_elements:,} elements (whole rows) each; special-value counts and achieved "
             "sizes are exact."] if sampled else []
    return {
        "tensorzip_analysis": 1, "kind": "checkpoint", "source": str(path), "notes": notes,
        "summary": {
            "tensors": len(profiles), "parameters": sum(int(np.prod(p["shape"])) for p in profiles),
            "bytes": file_bytes, "tensor_bytes": tensor_bytes, "order0_bytes": order0,
            "context_bytes": total("context_bits"), "achieved_bytes": achieved_total,
            "ratio": file_bytes / max(1, achieved_total),
            "gap_to_order0": payload / order0 - 1 if order0 else 0.0, "dtypes": counts,
        },
        "tensors": profiles,
    }
