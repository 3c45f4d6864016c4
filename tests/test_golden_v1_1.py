"""Format 1.1 golden files (bases, chains, tensors stored once) stay readable."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import tensorzip as tz
from tensorzip.container import TzipReader

from .conftest import assert_decodes_to_golden

GOLDEN = Path(__file__).resolve().parent / "golden" / "v1_1"


@pytest.mark.parametrize("file_name", ["tuned.tzip", "tuned2.tzip"])
def test_golden_file_decodes_with_its_chain(file_name):
    assert_decodes_to_golden(tz.load_file(GOLDEN / file_name), GOLDEN, file_name)  # bases found beside it


def test_golden_files_use_every_1_1_feature():
    with TzipReader(GOLDEN / "tuned.tzip") as reader:
        raw = (GOLDEN / "tuned.tzip").read_bytes()
        assert int.from_bytes(raw[10:12], "little") == 1  # format minor
        assert reader.base_name == "base.safetensors"
        modes = {e.delta.mode for e in reader.header.tensors.values() if e.delta}
        assert modes == {"xor", "sub"}
        assert reader.entry("w.f32.tied").same_as == "w.f32"
        assert reader.entry("head.f16").delta is None
    with TzipReader(GOLDEN / "tuned2.tzip") as reader:
        assert reader.base_name == "tuned.tzip"


def test_golden_chain_with_explicit_bases(tmp_path):
    shutil.copy(GOLDEN / "tuned2.tzip", tmp_path)
    back = tz.load_file(tmp_path / "tuned2.tzip", base=GOLDEN / "tuned.tzip")
    assert_decodes_to_golden(back, GOLDEN, "tuned2.tzip")
