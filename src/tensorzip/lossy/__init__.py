"""Lossy weights on a byte budget: a checkpoint in N bytes, with the error measured.

Every weight matrix (2-D float tensor) is rounded to a uniform grid whose step
per input column follows its sensitivity (``grid.py``), and the integers are
entropy-coded. One global step scale ``delta`` is shared by all matrices, which
equalises the marginal error per bit across layers (a Lagrangian allocation, not
a search over per-layer bit widths), and is found by bisection on the real
encoded size so the file meets the budget. Everything else (biases, norms,
integer tensors) is stored losslessly. The file decodes to an ordinary
checkpoint in the original dtypes, and records each tensor's achieved error.

    >>> import numpy as np, tensorzip as tz
    >>> from safetensors.numpy import save_file
    >>> rng = np.random.default_rng(0)
    >>> save_file({"w": (rng.standard_normal((256, 128)) * 0.02).astype(np.float32),
    ...            "b": np.zeros(256, np.float32)}, "/tmp/tz_lossy_doc.safetensors")
    >>> report = tz.lossy.compress_file("/tmp/tz_lossy_doc.safetensors", "/tmp/tz_lossy_doc.tzip", budget=0.15)
    >>> report.compressed_bytes <= 0.15 * report.original_bytes
    True
    >>> w = tz.lossy.load("/tmp/tz_lossy_doc.tzip")["w"]
    >>> round(report.tensors["w"]["relative_rms_error"], 3) < 0.15
    True
"""

from .codec import LossyReport, compress_file, decompress_file, describe, load

__all__ = ["LossyReport", "compress_file", "decompress_file", "describe", "load"]
