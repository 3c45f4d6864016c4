"""Minimal safetensors layout parser shared by the peers and the bounds.

Kept separate from tensorzip on purpose: the benchmark must not depend on the
code it measures to know where each tensor's bytes are.
"""

import json
import struct
from typing import NamedTuple

# Bytes per element of every safetensors dtype that can appear.
DTYPE_WIDTH = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}


class Tensor(NamedTuple):
    """One tensor's dtype, absolute byte range inside the file, and shape."""

    name: str
    dtype: str
    start: int
    end: int
    shape: tuple[int, ...] = ()

    @property
    def width(self) -> int:
        """Element size in bytes."""
        return DTYPE_WIDTH[self.dtype]


def parse(data: bytes) -> tuple[int, list[Tensor]]:
    """Return the offset where tensor data starts and the tensors in data order."""
    (header_len,) = struct.unpack_from("<Q", data, 0)
    base = 8 + header_len
    header = json.loads(bytes(data[8:base]))
    header.pop("__metadata__", None)
    tensors = sorted(
        (Tensor(name, info["dtype"], base + info["data_offsets"][0], base + info["data_offsets"][1],
                tuple(info["shape"]))
         for name, info in header.items()),
        key=lambda t: t.start,
    )
    return base, tensors
