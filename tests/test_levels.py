"""Compression levels (issue 22): ``max`` codes plane 1 of a chunk given plane 0 (chunk plane
mode 3, codec config ``context_planes``, header feature ``context-planes``) where that is
smaller, and stays lossless; ``default`` writes what it always wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.cli.main import main
from tensorzip.codecs import BytePlanesCodec, choose_codec
from tensorzip.codecs.byte_planes import uses_context_plane
from tensorzip.container import TzipReader, records
from tensorzip.container.format import PREAMBLE_SIZE
from tensorzip.dtypes import by_numpy
from tensorzip.errors import CorruptDataError, HeaderError, TensorzipError

from .conftest import assert_bit_equal, chunk_modes, rewrite_header, split_tzip

GOLDEN = Path(__file__).parent / "golden" / "context_planes_v1"
CONTEXT = 3  # the chunk plane mode


def weights(rng: np.random.Generator, shape: tuple[int, ...], dtype, scale: float = 0.05) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


def stored_chunks(blob: bytes) -> list[bytes]:
    """Every tensor's chunks of a one-tensor image, in order."""
    _, data, header = split_tzip(blob)
    (entry,) = header["tensors"]
    start = PREAMBLE_SIZE  # chunk offsets count from the file's start; the data area follows the preamble
    return [data[offset - start: offset - start + length] for offset, length, _crc in entry["chunks"]]


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float32, np.float16, np.int16, np.uint32, np.float64])
@pytest.mark.parametrize("shape", [(600, 512), (1,), (33,), (8193,), (70_001,), (3, 0)])
def test_max_round_trips_every_dtype_and_size_bit_for_bit(rng, dtype, shape):
    integers = np.dtype(dtype).kind in "iu"
    array = rng.integers(-300, 300, shape).astype(dtype) if integers else weights(rng, shape, dtype)
    blob = tz.compress(array, level="max")
    assert_bit_equal(tz.decompress(blob), array)


def test_max_is_smaller_on_bf16_and_fp32_weights_and_records_the_model_only_where_used(rng):
    for dtype in (ml_dtypes.bfloat16, np.float32):
        array = weights(rng, (512, 1024), dtype)
        default, best = tz.compress(array), tz.compress(array, level="max")
        assert len(best) < len(default)
        _, _, header = split_tzip(best)
        assert header["tensors"][0]["codec"]["context_planes"] is True
        assert header["features"]["required"] == [records.CONTEXT_PLANES_FEATURE]
        assert any(chunk_modes(c)[1] == CONTEXT for c in stored_chunks(best))
        assert_bit_equal(tz.decompress(best), array)


def test_where_the_model_does_not_pay_max_writes_the_default_bytes(rng):
    """Uniform random bits: plane 1 says nothing given plane 0; FP16: its plane 0 already
    holds the top mantissa bits. The chunks keep the default modes and the config is the
    plain one, so the file is the default's, readable by every release."""
    noise = rng.integers(0, 1 << 16, 300_000, dtype=np.uint16).view(ml_dtypes.bfloat16)
    for array in (noise, weights(rng, (300, 1024), np.float16)):
        best = tz.compress(array, level="max")
        assert best == tz.compress(array)
        _, _, header = split_tzip(best)
        assert "context_planes" not in header["tensors"][0]["codec"] and "features" not in header


def test_max_codes_small_tensors_groups_with_the_context_model_too(rng, tmp_path):
    """LoRA adapters: tensors of 12-48 KB, too small to pay for tables alone, coded together
    (issue 22's groups) pay for one context model between them."""
    tensors = {f"layer.{i}.lora_A": weights(rng, (16, 384), ml_dtypes.bfloat16, 0.02) for i in range(24)}
    tz.save_file(tensors, tmp_path / "default.tzip")
    tz.save_file(tensors, tmp_path / "max.tzip", level="max")
    assert (tmp_path / "max.tzip").stat().st_size < (tmp_path / "default.tzip").stat().st_size
    _, _, header = split_tzip((tmp_path / "max.tzip").read_bytes())
    assert header["groups"][0]["codec"]["context_planes"] is True
    back = tz.load_file(tmp_path / "max.tzip")
    for name, array in tensors.items():
        assert_bit_equal(back[name], array)


def test_a_group_with_the_context_model_needs_the_feature(tmp_path):
    def drop_feature(header):
        header["features"]["required"].remove(records.CONTEXT_PLANES_FEATURE)
        for tensor in header["tensors"]:
            tensor.get("codec", {}).pop("context_planes", None)

    bad = tmp_path / "bad.tzip"
    bad.write_bytes(rewrite_header((GOLDEN / "max.tzip").read_bytes(), drop_feature))
    with pytest.raises(HeaderError, match="a group codes planes given plane 0 but the header does not declare"):
        TzipReader(bad)


def test_default_level_never_writes_the_context_model(rng):
    array = weights(rng, (512, 1024), ml_dtypes.bfloat16)
    assert not any(uses_context_plane(c) for c in stored_chunks(tz.compress(array)))
    assert choose_codec(array, by_numpy(array.dtype)).get_config() == BytePlanesCodec.for_dtype(
        by_numpy(array.dtype)).get_config()


def test_golden_max_file_decodes_to_its_source_byte_for_byte(tmp_path):
    tz.decompress_file(GOLDEN / "max.tzip", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == (GOLDEN / "source.safetensors").read_bytes()
    _, _, header = split_tzip((GOLDEN / "max.tzip").read_bytes())
    assert records.CONTEXT_PLANES_FEATURE in header["features"]["required"]
    configs = {t["name"]: t.get("codec", {}) for t in header["tensors"]}
    assert configs["attention.query.weight"].get("context_planes") is True  # BF16
    assert configs["intermediate.dense.weight"].get("context_planes") is True  # FP32
    assert "context_planes" not in configs["output.dense.weight"]  # FP16: does not pay
    assert "context_planes" not in configs["noise"]
    groups = {g["dtype"]: g["codec"] for g in header["groups"]}
    assert groups["bfloat16"].get("context_planes") is True  # twelve LoRA-sized matrices, one model
    assert "context_planes" not in groups["float32"]  # one small bias


def test_the_encoder_writes_the_golden_max_file_again(tmp_path):
    tz.compress_file(GOLDEN / "source.safetensors", tmp_path / "again.tzip", level="max")
    assert (tmp_path / "again.tzip").read_bytes() == (GOLDEN / "max.tzip").read_bytes()


SIMD_SCRIPT = """
import sys, tensorzip as tz
source, packed, restored = sys.argv[1:4]
tz.compress_file(source, packed, level="max", threads=2)
tz.decompress_file(packed, restored, threads=2)
"""


@pytest.mark.parametrize("cap", ["scalar", "avx2"])
def test_every_simd_path_writes_and_reads_the_same_bytes(tmp_path, cap):
    """TENSORZIP_SIMD caps every kernel (scalar: the portable paths, the BMI2 merge too)."""
    packed, restored = tmp_path / "max.tzip", tmp_path / "back.safetensors"
    env = dict(os.environ, TENSORZIP_SIMD=cap)
    subprocess.run([sys.executable, "-c", SIMD_SCRIPT, str(GOLDEN / "source.safetensors"), str(packed),
                    str(restored)], env=env, check=True)
    assert packed.read_bytes() == (GOLDEN / "max.tzip").read_bytes()
    assert restored.read_bytes() == (GOLDEN / "source.safetensors").read_bytes()


def test_a_reader_without_the_feature_refuses_by_name(monkeypatch):
    monkeypatch.setattr(records, "KNOWN_REQUIRED_FEATURES",
                        records.KNOWN_REQUIRED_FEATURES - {records.CONTEXT_PLANES_FEATURE})
    with pytest.raises(HeaderError, match="'context-planes'.*upgrade tensorzip"):
        TzipReader(GOLDEN / "max.tzip")


def test_a_header_without_the_feature_or_the_config_is_refused(tmp_path):
    blob = (GOLDEN / "max.tzip").read_bytes()
    no_feature = tmp_path / "no_feature.tzip"

    def drop_feature(header):
        header["features"]["required"].remove(records.CONTEXT_PLANES_FEATURE)

    no_feature.write_bytes(rewrite_header(blob, drop_feature))
    with pytest.raises(HeaderError, match="does not declare the feature 'context-planes'"):
        TzipReader(no_feature)

    def drop_config(header):
        for tensor in header["tensors"]:
            tensor.get("codec", {}).pop("context_planes", None)

    no_config = tmp_path / "no_config.tzip"
    no_config.write_bytes(rewrite_header(blob, drop_config))
    with pytest.raises(CorruptDataError, match="intermediate.dense.weight. chunk 0 .*plane 1 is coded given plane 0"):
        tz.load_file(no_config)


def test_damage_in_a_context_plane_is_an_error_naming_the_tensor(rng):
    array = weights(rng, (256, 1024), ml_dtypes.bfloat16)
    blob = bytearray(tz.compress(array, level="max"))
    _, _, header = split_tzip(bytes(blob))
    at, length, _ = header["tensors"][0]["chunks"][0]
    chunk = bytes(blob[at: at + length])
    assert chunk_modes(chunk)[1] == CONTEXT
    plane0 = int.from_bytes(chunk[2:6], "little")
    body = at + 11 + plane0
    for offset in (0, 1, 2, 40, 200):  # k, the range, a table, the stream
        damaged = bytearray(blob)
        damaged[body + offset] ^= 0x41
        with pytest.raises(CorruptDataError, match="checksum|tensor ''"):
            tz.decompress(bytes(damaged))


def test_levels_are_checked_everywhere(tmp_path, capsys, rng):
    array = weights(rng, (64, 64), np.float32)
    for call in (lambda: tz.compress(array, level="fast"), lambda: tz.save_file({"a": array}, tmp_path / "a.tzip",
                                                                                level=9)):
        with pytest.raises(TensorzipError, match="level must be one of default, max"):
            call()
    source = tmp_path / "m.safetensors"
    save_safetensors({"w": weights(rng, (512, 512), np.float32)}, str(source))
    with pytest.raises(TensorzipError, match="level must be one of"):
        tz.compress_file(source, tmp_path / "m.tzip", level="MAX")
    with pytest.raises(SystemExit):
        main(["compress", str(source), "--level", "fast"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    code = main(["compress", str(source), "--lossy", "--level", "max"])
    assert code != 0 and "--level" in capsys.readouterr().err
    assert not (tmp_path / "m.lossy.tzip").exists()


def test_cli_and_save_file_write_max_and_everything_reads_it(tmp_path, capsys, rng):
    tensors = {"w": weights(rng, (512, 1024), ml_dtypes.bfloat16), "b": weights(rng, (64,), np.float32)}
    source = tmp_path / "m.safetensors"
    save_safetensors(tensors, str(source))
    assert main(["compress", str(source), "-o", str(tmp_path / "max.tzip"), "--level", "max"]) == 0
    assert main(["compress", str(source), "-o", str(tmp_path / "default.tzip")]) == 0
    assert (tmp_path / "max.tzip").stat().st_size < (tmp_path / "default.tzip").stat().st_size
    assert main(["verify", str(tmp_path / "max.tzip")]) == 0
    assert main(["decompress", str(tmp_path / "max.tzip"), "-o", str(tmp_path / "back.safetensors")]) == 0
    assert (tmp_path / "back.safetensors").read_bytes() == source.read_bytes()
    capsys.readouterr()
    assert main(["info", str(tmp_path / "max.tzip")]) == 0
    assert "level max: mantissa given exponent" in capsys.readouterr().out
    tz.save_file(tensors, tmp_path / "saved.tzip", level="max")
    back = tz.load_file(tmp_path / "saved.tzip")
    for name, array in tensors.items():
        assert_bit_equal(back[name], array)


def test_numcodecs_codec_takes_a_level_in_its_config(rng):
    numcodecs = pytest.importorskip("numcodecs")
    from tensorzip.integrations.numcodecs_codec import Tensorzip

    codec = Tensorzip(level="max")
    assert codec.get_config() == {"id": "tensorzip", "threads": None, "level": "max"}
    assert Tensorzip().get_config() == {"id": "tensorzip", "threads": None}
    again = numcodecs.get_codec(codec.get_config())
    array = weights(rng, (512, 512), ml_dtypes.bfloat16)
    encoded = again.encode(array)
    assert len(encoded) < len(Tensorzip().encode(array))
    assert_bit_equal(again.decode(encoded).view(array.dtype).reshape(array.shape), array)
    with pytest.raises(TensorzipError, match="level must be one of"):
        Tensorzip(level="fast")


def test_max_with_nothing_stored_exactly_is_refused_and_a_level_that_changed_nothing_is_said(tmp_path, capsys, rng):
    array = weights(rng, (256, 256), np.float32)
    for target in ({"max_abs_error": 1e-3}, {"max_rel_error": 1e-2}, {"psnr": 40.0}, {"bits": 4.0}):
        with pytest.raises(TensorzipError, match="level='max' codes arrays stored exactly"):
            tz.compress(array, level="max", **target)
    with pytest.raises(TensorzipError, match="error bound for every float tensor leaves none"):
        tz.save_file({"w": array}, tmp_path / "s.tzip", level="max", max_abs_error=1e-3)
    tz.save_file({"w": array, "v": array + 1}, tmp_path / "s.tzip", level="max", max_abs_error={"w": 1e-3})
    source = tmp_path / "m.safetensors"
    save_safetensors({"w": array, "h": weights(rng, (256, 256), np.float16)}, str(source))
    code = main(["compress", str(source), "--level", "max", "--max-abs-error", "1e-3"])
    assert code == 1 and "leaves none" in capsys.readouterr().err
    assert main(["compress", str(source), "--level", "max", "--max-abs-error", "h=1e-3"]) == 0  # w stays exact
    assert "level max: mantissa coded given the exponent in 1 of 2 tensors" in capsys.readouterr().out
    fp16 = tmp_path / "h.safetensors"
    save_safetensors({"h": weights(rng, (256, 256), np.float16)}, str(fp16))
    assert main(["compress", str(fp16), "--level", "max", "--json"]) == 0
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["level"] == "max" and report["context_tensors"] == 0
    assert main(["compress", str(fp16), "--level", "max", "-f"]) == 0
    assert "no tensor gained from it" in capsys.readouterr().out


def test_a_plugin_subclass_that_ignores_the_base_still_gets_the_readers_restore(tmp_path, rng, monkeypatch):
    """Restoring while decoding is a promise of BytePlanesCodec's own decode_batch; a subclass
    (e.g. a plugin) that overrides decode_batch does not inherit it, so the reader restores."""
    from safetensors.numpy import save_file as save

    from tensorzip.codecs import registry
    from tensorzip.codecs.base import DecodeJob

    class Subclass(BytePlanesCodec):
        codec_id = "tensorzip.byte_planes"

        @classmethod
        def decode_batch(cls, jobs, threads, verify_checksums=True):
            plain = [DecodeJob(j.codec, j.source, j.chunks, j.out, j.spec) for j in jobs]  # drops the base
            BytePlanesCodec.decode_batch(plain, threads, verify_checksums)

    base = {"w": weights(rng, (256, 256), np.float32)}
    tuned = {"w": base["w"] + weights(rng, (256, 256), np.float32, 1e-4)}
    save(base, str(tmp_path / "base.safetensors"))
    save(tuned, str(tmp_path / "tuned.safetensors"))
    tz.compress_file(tmp_path / "tuned.safetensors", tmp_path / "tuned.tzip", base=tmp_path / "base.safetensors")
    _, _, header = split_tzip((tmp_path / "tuned.tzip").read_bytes())
    assert header["tensors"][0].get("delta"), "the test needs a tensor coded against the base"
    monkeypatch.setitem(registry.BUILTIN_CODECS, "tensorzip.byte_planes", Subclass)
    back = tz.load_file(tmp_path / "tuned.tzip", base=tmp_path / "base.safetensors")
    assert_bit_equal(back["w"], tuned["w"])
