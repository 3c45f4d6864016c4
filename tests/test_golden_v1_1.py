"""Format 1.1 golden files (bases, chains, tensors stored once) stay readable."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import tensorzip as tz
from tensorzip.container import TzipReader

GOLDEN = Path(__file__).resolve().parent / "golden" / "v1_1"


@pytest.fixture(scope="module")
def expected():
    with np.load(GOLDEN / "expected.npz") as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.mark.parametrize("file_name", ["tuned.tzip", "tuned2.tzip"])
def test_golden_file_decodes_with_its_chain(file_name, expected):
    back = tz.load_file(GOLDEN / file_name)  # bases are found beside the file
    names = {k.split("/", 1)[1] for k in expected if k.startswith(f"{file_name}/")}
    assert set(back) == names
    for name, array in back.items():
        assert np.array_equal(array.reshape(-1).view(np.uint8), expected[f"{file_name}/{name}"]), name


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


def test_golden_chain_with_explicit_bases(tmp_path, expected):
    shutil.copy(GOLDEN / "tuned2.tzip", tmp_path)
    back = tz.load_file(tmp_path / "tuned2.tzip", base=GOLDEN / "tuned.tzip")
    for name, array in back.items():
        assert np.array_equal(array.reshape(-1).view(np.uint8), expected[f"tuned2.tzip/{name}"]), name
