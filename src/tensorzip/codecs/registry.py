"""From a stored codec config back to a codec object.

Built-in codecs are listed here; third-party codecs register through the
``tensorzip.codecs`` entry-point group (name = codec id, value = the class).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from ..errors import HeaderError, TensorzipError, UnknownCodecError
from .base import Codec
from .bounded import BoundedCodec
from .byte_planes import BytePlanesCodec
from .narrowed_float import NarrowedFloatCodec
from .sparse import SparseCodec

BUILTIN_CODECS: dict[str, type[Codec]] = {
    cls.codec_id: cls for cls in (BytePlanesCodec, NarrowedFloatCodec, SparseCodec, BoundedCodec)
}

ENTRY_POINT_GROUP = "tensorzip.codecs"


def _plugin_codec(codec_id: str) -> type[Codec] | None:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == codec_id:
            return entry.load()
    return None


def codec_class(codec_id: str) -> type[Codec]:
    """The class registered for a codec id."""
    cls = BUILTIN_CODECS.get(codec_id) or _plugin_codec(codec_id)
    if cls is None:
        known = ", ".join(sorted(BUILTIN_CODECS))
        raise UnknownCodecError(f"unknown codec id {codec_id!r} (this release knows: {known})")
    return cls


def codec_from_config(config: Any) -> Codec:
    """Rebuild a codec from its JSON config, rejecting malformed configs clearly."""
    if not isinstance(config, dict) or not isinstance(config.get("id"), str):
        raise HeaderError(f"codec config must be an object with a string 'id', got {config!r}")
    cls = codec_class(config["id"])
    try:
        return cls.from_config(config)
    except (TypeError, TensorzipError) as error:
        raise HeaderError(f"bad config for codec {config['id']!r}: {error}") from None
