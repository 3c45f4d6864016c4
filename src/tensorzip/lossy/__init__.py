"""Lossy weights on a byte budget: a checkpoint in N bytes, with the error measured.

Every weight matrix (2-D float tensor) is rounded to a uniform grid whose step
per input column follows its sensitivity (``grid.py``), and the integers are
entropy-coded. One global step scale ``delta`` is shared by all matrices, which
equalises the marginal error per bit across layers (a Lagrangian allocation, not
a search over per-layer bit widths), and is found by bisection on the real
encoded size so the file meets the budget. Everything else (biases, norms,
integer tensors) is stored losslessly. The file decodes to an ordinary
checkpoint in the original dtypes, and records each tensor's achieved error.

    >>> import pathlib, tempfile, numpy as np, tensorzip as tz
    >>> from safetensors.numpy import save_file
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> weights = (rng.standard_normal((256, 128)) * 0.02).astype(np.float32)
    >>> save_file({"w": weights, "b": np.zeros(256, np.float32)}, str(folder / "model.safetensors"))
    >>> report = tz.lossy.compress_file(folder / "model.safetensors", folder / "model.tzip", budget=0.15)
    >>> report.compressed_bytes <= 0.15 * report.original_bytes
    True
    >>> w = tz.lossy.load_file(folder / "model.tzip")["w"]
    >>> w.dtype, w.shape
    (dtype('float32'), (256, 128))
    >>> error = float(np.linalg.norm(w - weights) / np.linalg.norm(weights))   # as the report says
    >>> error < 0.15 and abs(error - report.tensors["w"]["relative_rms_error"]) < 1e-6
    True
    >>> report.tensors["b"]["mode"], report.tensors["w"]["mode"]
    ('exact', 'grid')
    >>> report = tz.lossy.decompress_file(folder / "model.tzip", folder / "back.safetensors")
    >>> report.output_bytes == (folder / "back.safetensors").stat().st_size
    True
    >>> import shutil; shutil.rmtree(folder)

The verbs are the package's: ``compress_file`` / ``decompress_file`` from file to file
(each returning a frozen report), ``load_file`` for the decoded tensors of a path;
``bits=`` is a budget in bits per weight, as in ``tz.kv``. A budget no grid meets
raises ``TargetUnreachableError``.
"""

from ..errors import TargetUnreachableError
from .codec import LossyDecompressionReport, LossyReport, compress_file, decompress_file, describe, load, load_file

__all__ = ["LossyDecompressionReport", "LossyReport", "TargetUnreachableError", "compress_file", "decompress_file",
           "describe", "load", "load_file"]
