"""Codec objects: registry, JSON configs, equality, repr, and config errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import tensorzip as tz
from tensorzip import dtypes
from tensorzip.codecs import (
    BUILTIN_CODECS,
    BytePlanesCodec,
    Codec,
    codec_class,
    codec_from_config,
    order0_bound_bytes,
)
from tensorzip.codecs.byte_planes import DEFAULT_CHUNK_BYTES
from tensorzip.container import TzipWriter


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def concrete_codecs():
    return [c for c in all_subclasses(Codec) if not getattr(c, "__abstractmethods__", None)]


def example_instances():
    return [BytePlanesCodec(), BytePlanesCodec(1, 100), BytePlanesCodec(rotate_bits=0, chunk_elements=1)]


def test_every_codec_is_registered():
    found = concrete_codecs()
    assert BytePlanesCodec in found
    for cls in found:
        assert BUILTIN_CODECS.get(cls.codec_id) is cls, f"{cls.__name__} ({cls.codec_id}) is not registered"
        assert codec_class(cls.codec_id) is cls
    for codec_id, cls in BUILTIN_CODECS.items():
        assert cls.codec_id == codec_id
        assert issubclass(cls, Codec)


def test_codec_ids_are_unique():
    ids = [cls.codec_id for cls in concrete_codecs()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("codec", example_instances(), ids=repr)
def test_config_round_trip(codec):
    config = codec.get_config()
    assert config["id"] == codec.codec_id
    assert json.loads(json.dumps(config)) == config  # plain JSON
    assert type(codec).from_config(config) == codec
    assert codec_from_config(config) == codec
    assert codec_from_config(json.loads(json.dumps(config))) == codec
    assert hash(codec_from_config(config)) == hash(codec)


def test_equality_and_repr():
    assert BytePlanesCodec(1, 100) == BytePlanesCodec(rotate_bits=1, chunk_elements=100)
    assert BytePlanesCodec(1, 100) != BytePlanesCodec(0, 100)
    assert BytePlanesCodec(1, 100) != BytePlanesCodec(1, 101)
    assert BytePlanesCodec() != "tensorzip.byte_planes"
    assert repr(BytePlanesCodec(1, 100)) == "BytePlanesCodec(chunk_elements=100, rotate_bits=1)"
    assert len({BytePlanesCodec(1, 100), BytePlanesCodec(1, 100), BytePlanesCodec(0, 100)}) == 2


def test_default_layouts():
    for name in tz.SUPPORTED_DTYPES:
        spec = dtypes.by_name(name)
        codec = BytePlanesCodec.for_dtype(spec)
        assert codec.chunk_elements == DEFAULT_CHUNK_BYTES // spec.itemsize
        expected = 1 if name in ("bfloat16", "float16", "float32", "float64") else 0
        assert codec.rotate_bits == expected, name


@pytest.mark.parametrize(
    "config", [None, "tensorzip.byte_planes", ["id"], 3, {}, {"rotate_bits": 1}, {"id": 7}, {"id": None}]
)
def test_codec_from_config_malformed(config):
    with pytest.raises(tz.HeaderError):
        codec_from_config(config)


@pytest.mark.parametrize("codec_id", ["", "tensorzip.zstd", "BYTE_PLANES", "tensorzip.byte_planes "])
def test_codec_from_config_unknown_id(codec_id):
    with pytest.raises(tz.UnknownCodecError, match="unknown codec id") as info:
        codec_from_config({"id": codec_id})
    assert "tensorzip.byte_planes" in str(info.value)  # lists what this release knows
    assert isinstance(info.value, tz.FormatError)


@pytest.mark.parametrize(
    "params",
    [
        {"rotate_bits": 2},
        {"rotate_bits": -1},
        {"rotate_bits": True},
        {"rotate_bits": "1"},
        {"chunk_elements": 0},
        {"chunk_elements": -5},
        {"chunk_elements": 1.5},
        {"chunk_elements": False},
        {"chunk_elements": "1024"},
        {"level": 9},
    ],
    ids=lambda p: json.dumps(p),
)
def test_codec_from_config_bad_params(params):
    with pytest.raises(tz.HeaderError, match="tensorzip.byte_planes"):
        codec_from_config({"id": "tensorzip.byte_planes", **params})


def test_constructor_validates_directly():
    with pytest.raises(tz.TensorzipError):
        BytePlanesCodec(rotate_bits=3)
    with pytest.raises(tz.TensorzipError):
        BytePlanesCodec(chunk_elements=0)


def test_chunk_over_the_native_limit_is_refused_on_use():
    codec = BytePlanesCodec(0, (1 << 22) // 4 + 1)  # just over 4 MiB of float32 per chunk
    with pytest.raises(tz.TensorzipError, match="chunk limit"), TzipWriter(io.BytesIO()) as writer:
        writer.add("x", np.zeros(4, np.float32), codec=codec)
        writer.flush()


def test_order0_bound_bytes():
    histograms = np.zeros((2, 256), np.uint64)
    histograms[0, 7] = 100  # constant plane: 0 bits
    histograms[1, :4] = 25  # four equiprobable symbols: 2 bits each
    assert order0_bound_bytes(histograms) == pytest.approx(100 * 2 / 8)
    assert order0_bound_bytes(np.zeros((4, 256), np.uint64)) == 0.0
