"""tensorzip as a numcodecs codec (and so a Zarr format 2 compressor).

Registered under the id ``"tensorzip"`` through the ``numcodecs.codecs`` entry
point, so ``numcodecs.get_codec({"id": "tensorzip"})`` works without importing
this module first. Each encoded buffer is a one-tensor .tzip image: dtype, shape
and checksums travel with the bytes. Zarr format 3 arrays use the array→bytes
codec in :mod:`tensorzip.integrations.zarr_codec` (``numcodecs.tensorzip``).

The codec follows numcodecs' conventions for lossless compressors (Zstd, Blosc, Zlib),
because Zarr format 2 and numcodecs' own conformance checks rely on them:

* Any buffer-protocol input (ndarray, bytes, bytearray, ``array.array``, memoryview) and
  any fixed-size dtype is accepted. Floats, integers and bools are coded as tensorzip
  codes them everywhere (byte planes of the real dtype, which is what makes tensorzip
  smaller than zstd on weights). A big-endian array of such a dtype is byte-swapped to
  native order first, so it compresses as well. Every other fixed-size dtype (datetime64,
  timedelta64, ``S``/``U`` strings, complex, void and structured records, ml_dtypes the
  format has no name for) is coded through a same-bytes integer view. The input dtype is
  then recorded in the image's metadata (``numcodecs.dtype``), so decoding returns the
  same dtype and the same bytes.
* Bytes are coded in the input's memory order, as zstd codes them: an F-contiguous array
  is stored as its C-ordered transpose (same bytes), marked ``numcodecs.order = "F"``,
  and decoded back to an F-ordered array of the input's shape, so the decoded buffer,
  reshaped with the array's order, equals the input. An input that is neither C- nor
  F-contiguous (a permuted or strided view) is copied to C order first.
* ``decode(buf, out=...)`` writes the bytes in ``out``'s memory order (element by element,
  in C order, for a non-contiguous ndarray ``out``) and checks that ``out`` is writable
  and exactly the decoded size before decoding anything.

Compatibility: a C-ordered native float/int/bool array encodes to exactly the bytes of
``tensorzip.compress(array)``, as before. Images written before the metadata keys existed
(an F-ordered input was stored as its transpose, unmarked) decode exactly as they did:
to the C-ordered transpose, whose memory bytes are the input's. ``tensorzip.decompress``
reads every image this codec writes, returning the stored array (the integer view, or
the transpose), since it does not know the numcodecs keys.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np
from numcodecs.abc import Codec as NumcodecsCodec
from numcodecs.compat import ensure_ndarray
from numpy.lib.format import descr_to_dtype, dtype_to_descr

from ..codecs import bounded, checked_threads, choose_codec
from ..codecs.bounded import error_bound
from ..codecs.policy import checked_level
from ..container.header import TensorEntry
from ..container.kinds import open_data
from ..container.reader import TzipReader
from ..container.records import FRAMEWORK_KEY, NUMCODECS_DTYPE_KEY, NUMCODECS_ORDER_KEY
from ..container.writer import one_tensor_image
from ..dtypes import by_numpy
from ..errors import FormatError, TensorzipError, UnsupportedDtypeError

# Metadata of the one-tensor image, written only when the stored array differs from the
# input (so plain arrays keep the exact bytes of tz.compress). Not in the reserved
# ``tensorzip.`` namespace: they describe this codec's view of the data, not the file.
DTYPE_KEY = NUMCODECS_DTYPE_KEY  # the input's dtype, when it is stored as another one
ORDER_KEY = NUMCODECS_ORDER_KEY  # "F": the input was F-ordered, stored as its C-ordered transpose
_ML_DTYPES_PREFIX = "ml_dtypes:"
_FACE = "the tensorzip numcodecs codec"


def _parse_threads(threads: Any) -> int | None:
    """None (the default: all cores) is kept as given, so the codec's config says it."""
    return None if threads is None else checked_threads(threads)


def _as_ndarray(buf: Any, what: str) -> np.ndarray:
    try:
        return ensure_ndarray(buf)
    except (TypeError, ValueError) as error:
        raise UnsupportedDtypeError(f"{what} must be a numpy array or an object exporting the buffer "
                                    f"protocol, got {type(buf).__name__} ({error})") from None


def _check_fixed_size(dtype: np.dtype, what: str) -> None:
    if dtype.hasobject or dtype.itemsize == 0:
        raise UnsupportedDtypeError(
            f"{what} has dtype {dtype}, which has no fixed-size bytes to code (object, variable-width "
            "string or zero-size dtypes); use a fixed-size dtype, or a numcodecs object codec as a filter")


def _tensorzip_dtype(dtype: np.dtype) -> bool:
    """Whether tensorzip codes ``dtype`` directly (a float, integer or bool it has a name for)."""
    try:
        by_numpy(dtype)
    except UnsupportedDtypeError:
        return False
    return True


def _native(dtype: np.dtype) -> np.dtype:
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def _integer_view_dtype(dtype: np.dtype) -> tuple[np.dtype, int]:
    """The unsigned (signed for datetimes) integer of the widest size dividing ``dtype``'s
    itemsize, and how many of them make one element: the dtype a raw dtype is stored as."""
    unit = next(u for u in (8, 4, 2, 1) if dtype.itemsize % u == 0)
    kind = "i" if dtype.kind in "mM" else "u"
    return np.dtype(f"={kind}{unit}"), dtype.itemsize // unit


def _dtype_tag(dtype: np.dtype) -> str:
    """``dtype`` as a metadata string: its .npy ``descr`` (``"<M8[ns]"``, ``"|S3"``, a
    record's field list), or ``ml_dtypes:<name>``; a dtype neither names comes back as
    raw void of the same size (same bytes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dtype metadata (h5py-style) is not kept: only the bytes are
        descr = dtype_to_descr(dtype)
    try:
        if descr_to_dtype(descr) == dtype:
            return descr if isinstance(descr, str) else repr(descr)
    except (TypeError, ValueError):
        pass
    named = getattr(ml_dtypes, dtype.name, None)
    if isinstance(named, type) and np.dtype(named) == dtype:
        return _ML_DTYPES_PREFIX + dtype.name
    return f"|V{dtype.itemsize}"


def _dtype_from_tag(tag: str, where: str) -> np.dtype:
    try:
        if tag.startswith(_ML_DTYPES_PREFIX):
            named = getattr(ml_dtypes, tag[len(_ML_DTYPES_PREFIX):], None)
            if not (isinstance(named, type) and issubclass(named, np.generic)):
                raise ValueError("no such ml_dtypes type")
            dtype = np.dtype(named)
        else:
            dtype = descr_to_dtype(ast.literal_eval(tag) if tag.startswith("[") else tag)
    except (TypeError, ValueError, SyntaxError, RecursionError, MemoryError):
        raise FormatError(f"{where}: metadata {DTYPE_KEY}={tag!r} is not a dtype this release reads") from None
    if dtype.hasobject or dtype.itemsize == 0:
        raise FormatError(f"{where}: metadata {DTYPE_KEY}={tag!r} names a dtype without fixed-size bytes")
    return dtype


def _to_storable(array: np.ndarray) -> tuple[np.ndarray, np.dtype | None]:
    """A C-ordered ``array`` as the array tensorzip stores, and the input dtype to record
    (``None`` when the stored array is the input)."""
    dtype = array.dtype
    if _tensorzip_dtype(dtype):
        return array, None
    native = _native(dtype)
    if native != dtype:  # byte-swapped to native order: a pure byte operation, bit for bit
        array = array.byteswap().view(native) if dtype.fields is None else array.astype(native)
    if not _tensorzip_dtype(native):
        integer, per_element = _integer_view_dtype(native)
        try:
            array = array.view(integer) if per_element == 1 else array[..., np.newaxis].view(integer)
        except (TypeError, ValueError) as error:  # a user DType numpy will not reinterpret as bytes
            raise UnsupportedDtypeError(f"the buffer to encode has dtype {dtype}, whose bytes numpy "
                                        f"cannot view as integers ({error})") from None
    return array, dtype


@dataclass(frozen=True)
class _Layout:
    """How the stored tensor of an image maps back to the encoded buffer."""

    dtype: np.dtype | None  # the input's dtype, when it was stored as another one
    fortran: bool  # stored as the C-ordered transpose of an F-ordered input

    @classmethod
    def of(cls, reader: TzipReader, entry: TensorEntry) -> _Layout:
        """The layout an image declares, checked against its tensor before anything is decoded."""
        metadata = reader.metadata() or {}
        order = metadata.get(ORDER_KEY)
        if order not in (None, "F"):
            raise FormatError(f"{reader.where}: metadata {ORDER_KEY}={order!r} is not an order this release reads")
        tag = metadata.get(DTYPE_KEY)
        dtype = None if tag is None else _dtype_from_tag(tag, reader.where)
        if dtype is not None:
            stored = entry.spec.numpy_dtype
            native = _native(dtype)
            integer, per_element = _integer_view_dtype(native)
            fits = stored == native or (
                stored == integer and (per_element == 1 or (entry.shape and entry.shape[-1] == per_element)))
            if not fits:
                raise FormatError(f"{reader.where}: the tensor is {entry.spec.name}{list(entry.shape)}, which "
                                  f"cannot hold the {dtype} array its metadata {DTYPE_KEY} declares")
        return cls(dtype, order == "F")

    def restore(self, stored: np.ndarray) -> np.ndarray:
        """The input's dtype back from the stored array, C-ordered (the F transpose not applied)."""
        if self.dtype is None:
            return stored
        native = _native(self.dtype)
        array = stored
        if array.dtype != native:  # an integer view: its last axis (if any) holds one element's bytes
            per_element = _integer_view_dtype(native)[1]
            array = array.view(native) if per_element == 1 else array.view(native)[..., 0]
        if native != self.dtype:
            array = array.byteswap().view(self.dtype) if native.fields is None else array.astype(self.dtype)
        return array


def _output(out: Any, nbytes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``out`` as an ndarray, and its bytes in memory order when it is contiguous, after
    checking that the decoded bytes fit it exactly."""
    array = _as_ndarray(out, "out")
    if array.dtype.hasobject:
        raise UnsupportedDtypeError(f"cannot decode into an array of dtype {array.dtype}: "
                                    "a compressor's bytes are never Python objects")
    if not array.flags.writeable:
        raise TensorzipError(f"out ({type(out).__name__}) is read-only; give a writable array or buffer")
    if array.nbytes != nbytes:
        raise TensorzipError(f"out holds {array.nbytes} bytes, the chunk decodes to {nbytes}: "
                             "give an output of exactly the chunk's size")
    if array.flags.c_contiguous or array.flags.f_contiguous:
        return array, array.reshape(-1, order="A").view(np.uint8)
    return array, None


def _positive(value: Any, name: str) -> float:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and value > 0):
        raise TensorzipError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Tensorzip(NumcodecsCodec):
    """Lossless tensorzip coding of each chunk: any buffer, any fixed-size dtype."""

    codec_id = "tensorzip"

    def __init__(self, threads: int | None = None, max_abs_error: float | None = None,
                 max_rel_error: float | None = None, level: str = "default"):
        """``max_abs_error`` / ``max_rel_error`` (issue 21): each float chunk within that error
        of the original on every element (relative: x the chunk's RMS); lossless without.
        ``level``: ``"default"`` or ``"max"`` (lossless: smaller, slower to decode; issue 22)."""
        self.threads = _parse_threads(threads)
        # Set only when not the default: the config of a default codec stays {"id", "threads"}.
        if checked_level(level) != "default":
            self.level = level
        if max_abs_error is not None and max_rel_error is not None:
            raise TensorzipError("give max_abs_error or max_rel_error, not both")
        # Set only when given: the config of a lossless codec stays {"id", "threads"}.
        if max_abs_error is not None:
            self.max_abs_error = _positive(max_abs_error, "max_abs_error")
        if max_rel_error is not None:
            self.max_rel_error = _positive(max_rel_error, "max_rel_error")

    def __repr__(self) -> str:
        targets = "".join(f", {k}={getattr(self, k)!r}" for k in ("max_abs_error", "max_rel_error", "level")
                          if hasattr(self, k))
        return f"{type(self).__name__}(threads={self.threads!r}{targets})"

    def encode(self, buf: Any) -> bytes:
        array = _as_ndarray(buf, "the buffer to encode")
        _check_fixed_size(array.dtype, "the buffer to encode")
        fortran = array.ndim > 1 and array.flags.f_contiguous and not array.flags.c_contiguous
        if fortran:
            array = array.T  # the C-ordered array with the same memory bytes
        elif not array.flags.c_contiguous:
            array = array.copy(order="C")  # a strided or permuted view: its elements in C order
        stored, dtype = _to_storable(array)
        metadata = {FRAMEWORK_KEY: "np"}  # as tz.compress writes it
        if dtype is not None:
            metadata[DTYPE_KEY] = _dtype_tag(dtype)
        if fortran:
            metadata[ORDER_KEY] = "F"
        codec = None
        if dtype is None and (stored.dtype.kind == "f" or stored.dtype.name == "bfloat16"):
            bound = error_bound(stored, getattr(self, "max_abs_error", None), getattr(self, "max_rel_error", None))
            if bound is not None:
                codec = bounded.choose(stored, bound).codec
        if codec is None:
            codec = choose_codec(stored, by_numpy(stored.dtype), getattr(self, "level", "default"))
        return one_tensor_image(stored, metadata, self.threads, codec)

    def decode(self, buf: Any, out: Any = None) -> Any:
        image = _as_ndarray(buf, "the buffer to decode")
        if not (image.flags.c_contiguous or image.flags.f_contiguous):
            image = image.copy(order="C")
        with open_data(image.reshape(-1, order="A").view(np.uint8), _FACE, threads=self.threads) as reader:
            if len(reader) != 1 or "" not in reader:
                raise FormatError(f"not a single-array image (holds {len(reader)} tensors): "
                                  "not a chunk this codec wrote; read it with tensorzip.load_file")
            entry = reader.entry("")
            layout = _Layout.of(reader, entry)
            if out is None:
                array = layout.restore(reader.get_tensor(""))
                return array.T if layout.fortran else array
            target, memory = _output(out, entry.nbytes)  # before anything is decoded
            if memory is not None and (layout.dtype is None or layout.dtype.isnative):
                direct = memory.view(entry.spec.numpy_dtype)
                if direct.flags.aligned:  # the image's bytes are the output's: decode in place
                    reader.decode_into([(entry, direct)])
                    return out
            source = np.ascontiguousarray(layout.restore(reader.get_tensor(""))).reshape(-1).view(np.uint8)
            if memory is not None:
                memory[...] = source
            else:  # a non-contiguous ndarray: its elements in C order
                target[...] = source.view(target.dtype).reshape(target.shape)
            return out
