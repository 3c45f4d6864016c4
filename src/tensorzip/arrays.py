"""The array and dict API: what most users call.

Shaped like safetensors (``save_file``/``load_file``/``safe_open``) plus
``compress``/``decompress`` for single arrays. A compressed single array is a
one-tensor .tzip image, so every blob carries checksums and a versioned header.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any, Literal

from . import error_targets
from .codecs import bounded, choose_codec
from .codecs.bounded import bounds_every_tensor, error_bound, targets_per_tensor
from .codecs.policy import checked_level
from .container import ReadLimits, TzipWriter
from .container.kinds import open_data
from .container.reader import open_base
from .container.records import FRAMEWORK_KEY
from .container.writer import one_tensor_image
from .dtypes import by_numpy
from .errors import FormatError, OutputFileError, TensorzipError
from .inputs.frameworks import is_torch_tensor, to_numpy, to_torch
from .outputs.atomic import refuse_output_over_inputs, same_file
from .writing.plan import add_tensors

Framework = Literal["np", "numpy", "pt", "torch"]



def _wants_torch(framework: str | None, recorded: str | None) -> bool:
    if framework is None:
        return recorded == "pt"
    if framework in ("pt", "torch"):
        return True
    if framework in ("np", "numpy"):
        return False
    raise TensorzipError(f"framework must be 'np' or 'pt', got {framework!r}")


def compress(array: Any, threads: int | None = None, *, max_abs_error: float | None = None,
             max_rel_error: float | None = None, psnr: float | None = None, bits: float | None = None,
             level: str = "default") -> bytes:
    """Compress one numpy array or torch tensor into bytes: losslessly, or with
    ``max_abs_error=E`` within E of the original on every element (checked on every element
    in the array's dtype before anything is returned; the achieved maximum is recorded in
    the blob), or ``max_rel_error=r``: E = r x the array's RMS. Floats only; where no grid
    meets the bound (NaN or infinity in the array, or E below the dtype's own spacing) the
    array is stored exactly. ``decompress`` gives the array back in its dtype and shape.

    Or one of two targets met by searching the bound, measured on the decoded array and
    recorded: ``psnr=P`` (decibels, against the array's value range: 20 log10(range / RMSE))
    or ``bits=B`` (the whole blob at most B bits per element; ``TargetUnreachableError`` if
    even the coarsest grid does not fit).

    ``level``: ``"default"`` or ``"max"`` (lossless: smaller, slower to decode; see
    ``compress_file``)."""
    checked_level(level)
    lossy = [n for n, v in (("max_abs_error", max_abs_error), ("max_rel_error", max_rel_error), ("psnr", psnr),
                            ("bits", bits)) if v is not None]
    if level != "default" and lossy:
        raise TensorzipError(f"level={level!r} codes arrays stored exactly; {lossy[0]}= stores values approximately: "
                             "give one or the other")
    data = to_numpy(array)
    metadata = {FRAMEWORK_KEY: "pt" if is_torch_tensor(array) else "np"}
    given = [name for name, value in (("max_abs_error", max_abs_error), ("max_rel_error", max_rel_error),
                                      ("psnr", psnr), ("bits", bits)) if value is not None]
    if len(given) > 1:
        raise TensorzipError(f"give one error target, not {' and '.join(given)} together (not both)")
    if psnr is not None or bits is not None:
        return error_targets.compress_to_target(data, metadata, threads, psnr=psnr, bits=bits)
    bound = error_bound(data, max_abs_error, max_rel_error)
    lossless = bound is None
    codec = choose_codec(data, by_numpy(data.dtype), level) if lossless else bounded.choose(data, bound).codec
    return one_tensor_image(data, metadata, threads, codec)


def decompress(blob: bytes | bytearray | memoryview, threads: int | None = None,
               framework: Framework | None = None) -> Any:
    """Inverse of ``compress``: bit-exact, same dtype and shape.

    Returns a torch tensor if a torch tensor was compressed (or ``framework="pt"``),
    a numpy array otherwise.
    """
    reader = open_data(blob, "tz.decompress", threads=threads)
    if len(reader) != 1 or "" not in reader:
        raise FormatError(f"not a single-array blob (holds {len(reader)} tensors); use load_file / safe_open")
    array = reader.get_tensor("")
    recorded = (reader.header.metadata or {}).get(FRAMEWORK_KEY)
    return to_torch(array) if _wants_torch(framework, recorded) else array


def save_file(
    tensors: Mapping[str, Any],
    path: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
    threads: int | None = None,
    base: str | os.PathLike[str] | None = None,
    *,
    max_abs_error: float | Mapping[str, float] | None = None,
    max_rel_error: float | Mapping[str, float] | None = None,
    level: str = "default",
) -> None:
    """Write a dict of arrays/tensors to a .tzip file, atomically.

    ``base``: a checkpoint (.safetensors or .tzip) to code each tensor against (the
    one it was fine-tuned from, or the previous checkpoint of a run); reading the
    file back then needs that base. Identical tensors are stored once.
    ``max_abs_error`` / ``max_rel_error``: store float tensors within that error of the
    original on every element (as ``compress``; relative: x each tensor's RMS), one number
    for every float tensor or a mapping of tensor name -> bound (others stored exactly).
    ``level``: ``"default"`` or ``"max"`` (see ``compress_file``; with a bound for every float
    tensor, nothing is stored exactly and it is refused).
    """
    if level != "default" and bounds_every_tensor(max_abs_error, max_rel_error):
        raise TensorzipError(f"level={level!r} codes the tensors stored exactly, and an error bound for every float "
                             "tensor leaves none: drop level, or give bounds per tensor (a mapping)")
    if not isinstance(tensors, Mapping):
        raise TensorzipError(f"save_file expects a mapping of name -> array, got {type(tensors).__name__}")
    if base is not None and same_file(path, base):
        raise OutputFileError(f"{path}: would overwrite its own base; write the new file elsewhere")
    with contextlib.ExitStack() as stack:
        reference = stack.enter_context(open_base(base, threads=threads)) if base is not None else None
        if reference is not None:
            refuse_output_over_inputs(path, *reference.files())
        writer = stack.enter_context(TzipWriter(path, metadata=metadata, threads=threads,
                                                base={"file": reference.name} if reference else None, level=level))
        add_tensors(writer, ((name, to_numpy(value)) for name, value in tensors.items()), reference,
                    targets_per_tensor(max_abs_error, max_rel_error))


def load_file(
    path: str | os.PathLike[str], threads: int | None = None, framework: Framework = "np",
    base: str | os.PathLike[str] | None = None, limits: ReadLimits | None = None,
) -> dict[str, Any]:
    """Read every tensor of a .tzip file (``base``: see ``save_file``). Refused, before anything
    is allocated, when the tensors declare more than ``limits.max_memory_bytes`` in all."""
    torch_out = _wants_torch(framework, None)
    with open_data(path, "tz.load_file", threads=threads, base=base, limits=limits) as reader:
        reader.check_fits_in_memory(sum(e.nbytes for e in reader.header.tensors.values()), "the file")
        return {name: to_torch(a) if torch_out else a for name, a in reader.iter_tensors()}


class safe_open:  # noqa: N801 - named after safetensors.safe_open, which it mirrors
    """Lazy access to a .tzip file: only the tensors asked for are read and decoded.

    >>> import numpy as np, tensorzip as tz, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "m.tzip")
    >>> tz.save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, path, metadata={"step": "1"})
    >>> with tz.safe_open(path) as f:
    ...     print(f.keys(), f.metadata(), f.get_tensor("w").shape)
    ['w'] {'step': '1'} (2, 3)
    """

    def __init__(self, path: str | os.PathLike[str], framework: Framework = "np",
                 threads: int | None = None, limits: ReadLimits | None = None,
                 base: str | os.PathLike[str] | None = None):
        self._torch = _wants_torch(framework, None)
        self._reader = open_data(path, "tz.safe_open", threads=threads, limits=limits, base=base)

    def keys(self) -> list[str]:
        return self._reader.keys()

    def metadata(self) -> dict[str, str] | None:
        return self._reader.metadata()

    def get_tensor(self, name: str) -> Any:
        array = self._reader.get_tensor(name)
        return to_torch(array) if self._torch else array

    def __enter__(self) -> safe_open:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._reader.close()

    def close(self) -> None:
        self._reader.close()

