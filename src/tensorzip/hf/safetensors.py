"""safetensors' reading API (``safe_open``, ``load_file``, ``load``), with its signatures,
for .tzip and .safetensors alike, local or at an fsspec URL.

Any code that takes safetensors' reader takes this one: swap the import
(``from tensorzip.hf.safetensors import safe_open``) and the same calls read a compressed
checkpoint, a compressed model folder or an archive too. Tensors are decoded only when asked
for; a URL transfers the header and the chunks of those tensors only.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..arrays import load_file as load_tzip_image
from ..container.format import MAGIC
from ..container.header import ReadLimits
from ..errors import InputFileError, TensorNotFoundError, TensorzipError
from ..inputs.frameworks import to_torch
from ..inputs.safetensors import parse_header
from .weights import LazyTensor, Weights

__all__ = ["safe_open", "load_file", "load"]

_FRAMEWORKS = {"pt": "pt", "torch": "pt", "pytorch": "pt", "np": "np", "numpy": "np"}


def _framework(name: str) -> str:
    try:
        return _FRAMEWORKS[name]
    except (KeyError, TypeError):
        raise TensorzipError(f"framework {name!r} is not supported: tensorzip reads into 'pt' (torch) "
                             "or 'np' (numpy)") from None


class safe_open:  # noqa: N801 - the name and signature of safetensors.safe_open
    """``safetensors.safe_open`` for .tzip and .safetensors files, compressed model folders and
    URLs. ``base``: the checkpoint a fine-tune was coded against, when it is not beside it."""

    def __init__(self, filename: str | os.PathLike[str], framework: str = "pt", device: Any = "cpu", *,
                 base: str | os.PathLike[str] | None = None, threads: int | None = None,
                 limits: ReadLimits | None = None):
        self._framework = _framework(framework)
        self._weights = Weights(filename, base=base, threads=threads, framework=self._framework, device=device,
                                limits=limits)

    def keys(self) -> list[str]:
        return list(self._weights.tensors)

    def offset_keys(self) -> list[str]:
        """The keys in storage order (safetensors' ``offset_keys``)."""
        return self.keys()

    def metadata(self) -> dict[str, str] | None:
        return self._weights.metadata()

    def get_tensor(self, name: str) -> Any:
        return self.get_slice(name).load()

    def get_slice(self, name: str) -> LazyTensor:
        try:
            return self._weights.tensors[name]
        except KeyError:
            raise TensorNotFoundError(f"{self._weights.where}: no tensor named {name!r}") from None

    def __enter__(self) -> safe_open:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._weights.close()

    def close(self) -> None:
        self._weights.close()


def load_file(filename: str | os.PathLike[str], device: Any = "cpu", *, framework: str = "pt",
              base: str | os.PathLike[str] | None = None, threads: int | None = None,
              limits: ReadLimits | None = None) -> dict[str, Any]:
    """Every tensor of ``filename`` (``safetensors.torch.load_file``'s signature; ``framework="np"``
    gives numpy arrays), decoded in batches with the next batch read while one decodes. A .tzip
    declaring more than ``limits.max_memory_bytes`` in all is refused before anything is decoded."""
    kind = _framework(framework)
    with Weights(filename, base=base, threads=threads, framework=kind, device=device, limits=limits) as weights:
        for source in weights.tzip_readers():
            source.check_fits_in_memory(sum(e.nbytes for e in source.header.tensors.values()), "the file")
        out: dict[str, Any] = {}
        for name, array in weights.read_all():
            if kind == "np":
                out[name] = array
                continue
            tensor = to_torch(array)
            out[name] = tensor if str(device) == "cpu" else tensor.to(device)
        return {name: out[name] for name in weights.tensors}  # the file's order


def load(data: bytes | bytearray | memoryview, device: Any = "cpu", *, framework: str = "pt") -> dict[str, Any]:
    """Every tensor of an in-memory .tzip or .safetensors image (``safetensors.torch.load``)."""
    kind = _framework(framework)
    view = memoryview(data).cast("B")
    if bytes(view[: len(MAGIC)]) == MAGIC:
        arrays = load_tzip_image(view, framework="np")
    else:
        if len(view) < 8:
            raise InputFileError(f"<bytes>: not a safetensors image (only {len(view)} bytes)")
        length = int.from_bytes(view[:8], "little")
        if 8 + length > len(view):
            raise InputFileError(f"<bytes>: not a safetensors image (header of {length:,} bytes declared)")
        entries, _ = parse_header(bytes(view[8 : 8 + length]), "<bytes>", len(view) - 8 - length)
        start = 8 + length
        arrays = {e.name: np.frombuffer(view[start + e.begin : start + e.end], dtype=e.spec.numpy_dtype)
                  .reshape(e.shape).copy() for e in entries}
    if kind == "np":
        return arrays
    return {k: to_torch(v) if str(device) == "cpu" else to_torch(v).to(device) for k, v in arrays.items()}
