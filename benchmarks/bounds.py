"""Order-0 entropy bounds for byte-plane layouts, in plain numpy.

This is the yardstick tensorzip's entropy coder is judged against: an order-0
coder that codes each byte plane with its own static model can do no better
than the plane's empirical entropy (ignoring its table). It is computed here
independently of tensorzip's code so that a bug there cannot hide itself.

Layouts: ``rotate=0`` splits each little-endian element into byte planes
(plane k = byte k). ``rotate=1`` first rotates every element's bits left by one
within its width, so a float's sign moves to the lowest bit and its exponent
starts at the top bit, then splits into byte planes.
"""

from collections import defaultdict

import numpy as np

from stfile import FLOAT_DTYPES, parse


def rotl(elements: np.ndarray, r: int) -> np.ndarray:
    """Rotate each unsigned element's bits left by ``r`` within its width."""
    if r == 0:
        return elements
    bits = elements.dtype.itemsize * 8
    return (elements << r) | (elements >> (bits - r))


def plane_histograms(raw, width: int, rotate: int) -> np.ndarray:
    """256-bin histogram of each byte plane: shape (width, 256)."""
    elements = rotl(np.frombuffer(raw, dtype=f"<u{width}"), rotate)
    planes = elements.view(np.uint8).reshape(-1, width)
    return np.stack([np.bincount(planes[:, k], minlength=256) for k in range(width)])


def entropy_bytes(counts: np.ndarray) -> float:
    """Sum over histogram rows of n * H0 / 8, i.e. the order-0 bound in bytes.

    Works for any alphabet size, so other layouts can reuse it.
    """
    total = 0.0
    for row in np.atleast_2d(counts).astype(np.float64):
        n = row.sum()
        nz = row[row > 0]
        total += (n * np.log2(n) - (nz * np.log2(nz)).sum()) / 8 if n else 0.0
    return float(total)


def tensor_bound(raw, width: int, rotate: int) -> float:
    """Order-0 bound in bytes of one tensor's raw bytes under a layout."""
    return entropy_bytes(plane_histograms(raw, width, rotate))


def file_bounds(data: bytes, rotate: int) -> tuple[float, float]:
    """(per-tensor, whole-file) bounds in bytes of a safetensors file's tensor data.

    ``rotate`` applies to float tensors; integer tensors always use plain byte
    planes, as tensorzip does. Per-tensor: every tensor gets its own model,
    summed. Whole-file: planes of all tensors of one dtype are pooled into one
    model per plane. The JSON header is outside both bounds.
    """
    _, tensors = parse(data)
    per_tensor = 0.0
    pooled: dict[str, np.ndarray] = defaultdict(lambda: 0)
    for t in tensors:
        hist = plane_histograms(data[t.start:t.end], t.width, rotate if t.dtype in FLOAT_DTYPES else 0)
        per_tensor += entropy_bytes(hist)
        pooled[t.dtype] = pooled[t.dtype] + hist
    return per_tensor, float(sum(entropy_bytes(h) for h in pooled.values()))
