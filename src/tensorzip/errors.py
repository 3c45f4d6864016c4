"""The exceptions tensorzip raises.

Every failure a user can cause (a bad file, a wrong argument, a missing base) is a
``TensorzipError`` subclass, so ``except tensorzip.TensorzipError`` is enough to catch
them all. Messages name the file, the tensor and the byte offset where they know them.
"""

from __future__ import annotations


class TensorzipError(Exception):
    """Base class of every error tensorzip raises on bad input or bad arguments."""


class FormatError(TensorzipError, ValueError):
    """The file is not a .tzip file, or is of a version this release cannot read."""


class HeaderError(FormatError):
    """The .tzip header is malformed, too large, or inconsistent with the file."""


class CorruptDataError(TensorzipError, ValueError):
    """Stored bytes fail their checksum or do not decode: the file was damaged."""


class TruncatedFileError(CorruptDataError):
    """The file ends before the bytes its header declares."""


class UnsupportedDtypeError(TensorzipError, TypeError):
    """The dtype has no tensorzip codec (e.g. object or complex arrays)."""


class UnknownCodecError(FormatError):
    """A tensor names a codec id that this release does not know."""


class LimitExceededError(TensorzipError, ValueError):
    """A declared size exceeds a configured safety limit (header size, element count)."""


class InputFileError(TensorzipError, OSError):
    """An input file is missing, unreadable, or not of the expected format."""


class WrongKindError(InputFileError, FormatError):
    """The input is a kind of file this command or function does not read (an embedding
    collection given to load_file, a .npy given to compress); the message names what does."""


class OutputFileError(TensorzipError, OSError):
    """The output cannot be written (not writable, disk full, exists without --force)."""


class TensorNotFoundError(TensorzipError, KeyError):
    """A tensor name is not in the file."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class BaseRequiredError(TensorzipError):
    """The file is coded against a base checkpoint that was not given or cannot be found."""


class BaseMismatchError(TensorzipError, ValueError):
    """The base given is not the one the file was coded against (a tensor's content hash differs)."""


class TargetUnreachableError(TensorzipError, ValueError):
    """A lossy target cannot be met with the data given (a byte or bit budget below what the
    coarsest quantizer takes, an error bound or a recall beyond what the finest one reaches,
    or a target out of range); nothing was written. The message says what was measured."""
