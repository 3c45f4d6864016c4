"""tensorzip: store what neural networks store in as few bytes as their information allows.

Lossless and bit-exact by default. The public API is re-exported here; nothing else
lives in this module.
"""

from . import capture, embeddings, kv, lossy, torch
from .arrays import compress, decompress, load_file, safe_open, save_file
from .container import ReadLimits
from .dtypes import SUPPORTED_DTYPES
from .errors import (
    BaseMismatchError,
    BaseRequiredError,
    CorruptDataError,
    FormatError,
    HeaderError,
    InputFileError,
    LimitExceededError,
    OutputFileError,
    TargetUnreachableError,
    TensorNotFoundError,
    TensorzipError,
    TruncatedFileError,
    UnknownCodecError,
    UnsupportedDtypeError,
    WrongKindError,
)
from .files import CompressionReport, DecompressionReport, VerifyReport, compress_file, decompress_file, verify_file
from .folders import FolderReport, compress_folder, decompress_folder
from .outputs.memory_file import MemoryFile
from .salvage import SalvageReport, salvage_file
from .summary import contents, info

__version__ = "0.1.0"

__all__ = [
    "capture",
    "embeddings",
    "kv",
    "lossy",
    "torch",
    "SUPPORTED_DTYPES",
    "CompressionReport",
    "BaseMismatchError",
    "BaseRequiredError",
    "CorruptDataError",
    "DecompressionReport",
    "FolderReport",
    "FormatError",
    "HeaderError",
    "InputFileError",
    "LimitExceededError",
    "MemoryFile",
    "OutputFileError",
    "ReadLimits",
    "TargetUnreachableError",
    "TensorNotFoundError",
    "TensorzipError",
    "TruncatedFileError",
    "UnknownCodecError",
    "UnsupportedDtypeError",
    "WrongKindError",
    "VerifyReport",
    "SalvageReport",
    "contents",
    "salvage_file",
    "compress",
    "compress_file",
    "compress_folder",
    "decompress",
    "decompress_file",
    "decompress_folder",
    "info",
    "load_file",
    "safe_open",
    "save_file",
    "verify_file",
]
