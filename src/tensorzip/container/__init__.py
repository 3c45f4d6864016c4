"""The .tzip container: preamble, chunks, JSON header (docs/format.md)."""

from .format import FORMAT_MAJOR, FORMAT_MINOR, MAGIC
from .header import Header, ReadLimits, TensorEntry
from .reader import TzipReader
from .writer import TensorStats, TzipWriter

__all__ = [
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAGIC",
    "Header",
    "ReadLimits",
    "TensorEntry",
    "TensorStats",
    "TzipReader",
    "TzipWriter",
]
