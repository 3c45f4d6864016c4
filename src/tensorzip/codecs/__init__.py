"""Codecs: one module per codec, each a ``Codec`` with a ``codec_id`` and a JSON config."""

from .base import (
    ChunkDecodeError,
    ChunkRef,
    Codec,
    DecodeJob,
    EncodedTensor,
    EncodeJob,
    checked_threads,
    order0_bound_bytes,
)
from .byte_planes import BytePlanesCodec
from .narrowed_float import NarrowedFloatCodec
from .policy import choose_codec
from .registry import BUILTIN_CODECS, codec_class, codec_from_config
from .sparse import SparseCodec

__all__ = [
    "checked_threads",
    "BUILTIN_CODECS",
    "BytePlanesCodec",
    "ChunkDecodeError",
    "ChunkRef",
    "Codec",
    "DecodeJob",
    "EncodeJob",
    "NarrowedFloatCodec",
    "SparseCodec",
    "EncodedTensor",
    "codec_class",
    "choose_codec",
    "codec_from_config",
    "order0_bound_bytes",
]
