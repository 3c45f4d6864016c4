"""numpy <-> torch without making torch a dependency.

torch is imported only when the caller hands over a torch tensor or asks for one.
bfloat16 and float8 tensors cross as raw bits, since numpy has no such dtypes of
its own (ml_dtypes supplies them).
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_dtypes
import numpy as np

from ..errors import TensorzipError, UnsupportedDtypeError

# torch dtype name -> (numpy dtype, same-width integer dtype to cross with)
_TORCH_BITCAST = {
    "bfloat16": (np.dtype(ml_dtypes.bfloat16), "int16"),
    "float8_e4m3fn": (np.dtype(ml_dtypes.float8_e4m3fn), "uint8"),
    "float8_e5m2": (np.dtype(ml_dtypes.float8_e5m2), "uint8"),
}


def is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def to_numpy(value: Any) -> np.ndarray:
    """A C-contiguous numpy view or copy of an array-like or torch tensor."""
    if is_torch_tensor(value):
        if value.is_meta or value.is_nested or value.layout != importlib.import_module("torch").strided:
            kind = "meta" if value.is_meta else "nested" if value.is_nested else str(value.layout)
            raise UnsupportedDtypeError(f"a {kind} torch tensor holds no dense data to store; pass a dense tensor "
                                        "(.to_dense(), or the tensor it was made from)")
        tensor = value.detach().cpu().resolve_conj().resolve_neg().contiguous()
        name = str(tensor.dtype).removeprefix("torch.")
        if name in _TORCH_BITCAST:
            numpy_dtype, carrier = _TORCH_BITCAST[name]
            torch = importlib.import_module("torch")
            return tensor.view(getattr(torch, carrier)).numpy().view(numpy_dtype)
        try:
            return tensor.numpy()
        except TypeError as error:
            raise UnsupportedDtypeError(f"torch dtype {tensor.dtype} is not supported: {error}") from None
    try:
        array = np.asarray(value)
    except Exception as error:  # noqa: BLE001 - anything numpy cannot convert
        raise TensorzipError(f"cannot convert {type(value).__name__} to an array: {error}") from None
    # np.ascontiguousarray would turn a 0-d array into shape (1,).
    return array if array.flags.c_contiguous else array.copy(order="C")


def to_torch(array: np.ndarray) -> Any:
    """A torch tensor sharing memory with ``array`` where the dtype allows."""
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        raise TensorzipError("framework='pt' needs PyTorch: pip install torch") from None
    for name, (numpy_dtype, carrier) in _TORCH_BITCAST.items():
        if array.dtype == numpy_dtype:
            return torch.from_numpy(array.view(carrier)).view(getattr(torch, name))
    return torch.from_numpy(array)
