"""Base pins by BLAKE3 (the ``blake3-pins`` feature, issue 20): the golden files stay
readable, the pins are what they claim, and a base that differs is refused; files pinned by
SHA-256 (``golden/v1_1``) read as before."""

from __future__ import annotations

import shutil
from pathlib import Path

import blake3
import numpy as np
import pytest
from safetensors.numpy import load_file as load_safetensors

import tensorzip as tz
from tensorzip.codecs.residual import BLAKE3_PINS, SHA256_PINS, Delta, digest
from tensorzip.container import TzipReader, records
from tensorzip.container.pin_cache import PinCache
from tensorzip.errors import BaseMismatchError, HeaderError

from .conftest import assert_decodes_to_golden, rewrite_header

GOLDEN = Path(__file__).resolve().parent / "golden" / "blake3_pins_v1"


@pytest.mark.parametrize("file_name", ["tuned.tzip", "tuned2.tzip"])
def test_golden_file_decodes_with_its_chain(file_name):
    assert_decodes_to_golden(tz.load_file(GOLDEN / file_name), GOLDEN, file_name)  # bases found beside it


def test_golden_restores_the_fine_tune_byte_for_byte(tmp_path):
    tz.decompress_file(GOLDEN / "tuned.tzip", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == (GOLDEN / "tuned.safetensors").read_bytes()


def test_each_pin_is_the_blake3_of_the_base_tensor_bytes():
    """Computed independently of tensorzip: the first 16 bytes of BLAKE3 over the tensor's bytes."""
    base = load_safetensors(str(GOLDEN / "base.safetensors"))
    with TzipReader(GOLDEN / "tuned.tzip") as reader:
        assert records.BLAKE3_PINS_FEATURE in reader.header.required_features
        deltas = {e.name: e.delta for e in reader.header.tensors.values() if e.delta is not None}
    assert set(deltas) == {"w.f32", "w.bf16", "ids.i64"}
    for name, delta in deltas.items():
        data = np.ascontiguousarray(base[delta.base_tensor]).tobytes()
        assert delta.base_digest == BLAKE3_PINS + blake3.blake3(data).hexdigest(16), name


def test_new_files_pin_by_blake3_and_old_pins_are_checked_by_sha256(rng):
    array = rng.standard_normal(1000).astype(np.float32)
    assert digest(array).startswith(BLAKE3_PINS)
    import hashlib
    assert digest(array, SHA256_PINS) == SHA256_PINS + hashlib.sha256(array.tobytes()).hexdigest()[:32]
    big = rng.standard_normal(3 << 20).astype(np.float32)  # hashed on every core: the same value
    assert digest(big) == BLAKE3_PINS + blake3.blake3(big.tobytes()).hexdigest(16)


def test_a_changed_base_is_refused_by_name(tmp_path):
    for name in ("tuned.tzip", "base.safetensors"):
        shutil.copy(GOLDEN / name, tmp_path / name)
    base = bytearray((tmp_path / "base.safetensors").read_bytes())
    base[-1] ^= 0x01  # the last tensor's last byte
    (tmp_path / "base.safetensors").write_bytes(bytes(base))
    with pytest.raises(BaseMismatchError, match=r"differs from the one it was made with.*blake3-128:"):
        tz.decompress_file(tmp_path / "tuned.tzip", tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_an_old_reader_refuses_the_file_by_name(monkeypatch):
    monkeypatch.setattr(records, "KNOWN_REQUIRED_FEATURES",
                        records.KNOWN_REQUIRED_FEATURES - {records.BLAKE3_PINS_FEATURE})
    with pytest.raises(HeaderError, match="'blake3-pins'.*upgrade tensorzip"):
        TzipReader(GOLDEN / "tuned2.tzip")


def test_a_blake3_pin_without_the_feature_is_refused(tmp_path):
    def drop_feature(header):
        header["features"]["required"].remove(records.BLAKE3_PINS_FEATURE)

    bad = tmp_path / "tuned2.tzip"
    bad.write_bytes(rewrite_header((GOLDEN / "tuned2.tzip").read_bytes(), drop_feature))
    with pytest.raises(HeaderError, match="BLAKE3 pin but the header does not declare the feature 'blake3-pins'"):
        TzipReader(bad)


@pytest.mark.parametrize("pin", ["md5-128:" + "0" * 32, BLAKE3_PINS + "0" * 31, BLAKE3_PINS + "G" * 32])
def test_malformed_pins_are_refused(pin):
    with pytest.raises(HeaderError, match="base_digest must be one of"):
        Delta.from_json({"mode": "xor", "base_tensor": "w", "base_digest": pin}, "f.tzip")


def test_remembered_pins_are_kept_per_hash(tmp_path):
    """A SHA-256 pin remembered for a tensor never answers a lookup for its BLAKE3 pin."""
    base = tmp_path / "b.bin"
    base.write_bytes(b"x" * 64)
    cache = PinCache(base, tmp_path / "cache")
    cache.remember(0, 64, SHA256_PINS + "a" * 32, SHA256_PINS)
    assert cache.lookup(0, 64, BLAKE3_PINS) is None
    cache.remember(0, 64, BLAKE3_PINS + "b" * 32, BLAKE3_PINS)
    cache.save()
    again = PinCache(base, tmp_path / "cache")
    assert again.lookup(0, 64, SHA256_PINS) == SHA256_PINS + "a" * 32
    assert again.lookup(0, 64, BLAKE3_PINS) == BLAKE3_PINS + "b" * 32
