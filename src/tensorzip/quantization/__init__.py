"""The plumbing the lossy layers (``tz.kv``, ``tz.embeddings``, ``tz.lossy``) share; private.

Each layer keeps only its own domain (the attention error of a KV cache, the recall
solver of an embedding collection, the sensitivity of weights); what is the same in
all three lives here once:

- ``grid``: values rounded to a uniform grid, stored as zigzag symbols of the narrowest
  unsigned type, and back (``quantize``, ``dequantize``, ``zigzag``, ``to_symbols``);
- ``bisection``: the one search for the best parameter meeting a target measured on
  real encodes (``bisect``), raising ``TargetUnreachableError`` when none does;
- ``layer_file``: a layer's tensors plus its JSON record under its metadata key, written
  and read back with the format checked (``LayerFormat``, ``write_layer``, ``read_layer``);
- ``entropy``: the order-0 entropy of symbol arrays (``order0_bits``) and of histograms
  (``bits_of_counts``).

Nothing here changes a byte a layer writes: where the layers' arithmetic differs (the
precision of the division, the symbol width allowed), it is an explicit parameter.
"""

from .bisection import Found, TargetNotMet, bisect
from .entropy import bits_of_counts, order0_bits
from .grid import (
    GridCode,
    SymbolRangeError,
    dequantize,
    quantize,
    quantize_columns,
    to_symbols,
    unzigzag,
    unzigzag_float32,
    zigzag,
)
from .layer_file import LayerFormat, layer_bytes, open_layer, read_layer, write_layer

__all__ = [
    "Found",
    "GridCode",
    "LayerFormat",
    "SymbolRangeError",
    "TargetNotMet",
    "bisect",
    "bits_of_counts",
    "dequantize",
    "layer_bytes",
    "open_layer",
    "order0_bits",
    "quantize",
    "quantize_columns",
    "read_layer",
    "to_symbols",
    "unzigzag",
    "unzigzag_float32",
    "write_layer",
    "zigzag",
]
