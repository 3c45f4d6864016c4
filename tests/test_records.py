"""Header records checked when a file is opened (container/records.py): required features
refused by name, optional ones ignored; source records and layer keys validated at parse
time, so no face ever acts on a malformed record."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tensorzip as tz
from tensorzip.container import TzipReader
from tensorzip.container.kinds import Kind, identify

from .conftest import rewrite_header


def _opened(tmp_path, blob: bytes):
    path = tmp_path / "edited.tzip"
    path.write_bytes(blob)
    with TzipReader(path) as reader:
        return reader.header


def test_a_required_feature_this_reader_does_not_know_is_refused_by_name(tmp_path, small_tzip):
    blob = rewrite_header(small_tzip.read_bytes(), lambda h: h.__setitem__("features", {"required": ["groups-v9"]}))
    with pytest.raises(tz.HeaderError, match="'groups-v9'.*upgrade tensorzip"):
        _opened(tmp_path, blob)


def test_optional_features_and_unknown_reserved_keys_are_ignored(tmp_path, small_tzip):
    def edit(header):
        header["features"] = {"optional": ["a-hint"]}
        header["metadata"]["tensorzip.future_note"] = "x"

    path = tmp_path / "ok.tzip"
    path.write_bytes(rewrite_header(small_tzip.read_bytes(), edit))
    assert tz.load_file(path).keys() == tz.load_file(small_tzip).keys()


@pytest.mark.parametrize("features", [["x"], {"required": "x"}, {"required": [1]}, {"other": []}])
def test_malformed_features_are_refused(tmp_path, small_tzip, features):
    blob = rewrite_header(small_tzip.read_bytes(), lambda h: h.__setitem__("features", features))
    with pytest.raises(tz.HeaderError, match="features"):
        _opened(tmp_path, blob)


@pytest.mark.parametrize("source, message", [
    ({"format": "weird"}, "unknown source format"),
    ({"format": "safetensors"}, "original header text"),
    ({"format": "torch", "file": 3}, "file name"),
    ({"format": "torch", "file": "m.pt", "size": 1, "wrapper": "model"}, "unknown wrapper"),
    ({"format": "safetensors-folder", "files": []}, "must list its files"),
    ({"format": "safetensors-folder", "files": [{"name": "../x", "header": "{}", "tensors": 2}]}, "plain file name"),
    ({"format": "safetensors-folder", "files": [{"name": "a", "header": "{}", "tensors": 5}]}, "hold 5 tensors"),
    ("text", "must be an object"),
])
def test_source_records_are_validated_when_the_header_is_parsed(tmp_path, small_tzip, source, message):
    blob = rewrite_header(small_tzip.read_bytes(), lambda h: h.__setitem__("source", source))
    with pytest.raises(tz.HeaderError, match=message):
        _opened(tmp_path, blob)


def test_two_layer_records_in_one_file_are_refused(tmp_path):
    keys = np.random.default_rng(0).standard_normal((1, 1, 1, 32, 8)).astype(np.float32)
    blob = tz.kv.compress(keys, keys, step=0.1)
    record = json.dumps({"format": 1})
    edited = rewrite_header(blob, lambda h: h["metadata"].__setitem__("tensorzip.embeddings", record))
    with pytest.raises(tz.HeaderError, match="more than one lossy layer"):
        _opened(tmp_path, edited)


def test_the_kind_follows_from_the_records(tmp_path, small_tzip):
    assert identify(small_tzip).kind is Kind.CHECKPOINT
    keys = np.random.default_rng(0).standard_normal((1, 1, 1, 32, 8)).astype(np.float32)
    (tmp_path / "kv.tzip").write_bytes(tz.kv.compress(keys, keys, step=0.1))
    assert identify(tmp_path / "kv.tzip").kind is Kind.KV_CACHE
    (tmp_path / "dir").mkdir()
    assert identify(tmp_path / "dir").kind is Kind.UNKNOWN
    with pytest.raises(tz.InputFileError, match="no such file"):
        identify(tmp_path / "missing")
