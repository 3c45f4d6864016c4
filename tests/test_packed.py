"""Small tensors coded together (format feature ``packed``; docs/format.md, "Small tensors
coded together"): the write plan packs tensors of at most 64 KiB into groups per dtype and
magnitude band; every tensor still reads alone, bit for bit, and every malformed group or
entry is refused by name."""

from __future__ import annotations

import io

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.container import TzipReader, TzipWriter, records
from tensorzip.container.packing import by_magnitude, choose_partition, log_magnitude
from tensorzip.errors import CorruptDataError, HeaderError
from tensorzip.writing.plan import PACK_MAX_TENSOR_BYTES

from .conftest import flip, rewrite_header, split_tzip


def model_like(seed: int = 0) -> dict[str, np.ndarray]:
    """Biases near 0.02, norms near 1, a zero tensor, ints, a scalar, and two large matrices."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for layer in range(4):
        tensors[f"layer{layer}.weight"] = (rng.standard_normal((96, 200)) * 0.05).astype(np.float32)  # 75 KiB
        tensors[f"layer{layer}.bias"] = (rng.standard_normal(200) * 0.02).astype(np.float32)
        tensors[f"layer{layer}.norm"] = (1 + rng.standard_normal(200) * 0.01).astype(np.float32)
        tensors[f"layer{layer}.half"] = (rng.standard_normal((8, 20)) * 0.1).astype(ml_dtypes.bfloat16)
    tensors["zeros"] = np.zeros(50, np.float32)
    tensors["ids"] = np.arange(300, dtype=np.int64)
    tensors["step"] = np.array(7, dtype=np.int64)
    tensors["mask"] = rng.random(77) < 0.5
    tensors["empty"] = np.zeros((0, 4), np.float32)
    return tensors


def assert_all_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
        assert got[name].tobytes() == array.tobytes(), name


def test_small_tensors_are_coded_in_groups_and_read_back_bit_for_bit(tmp_path):
    tensors = model_like()
    path = tmp_path / "m.tzip"
    tz.save_file(tensors, path)
    fields, _, header = split_tzip(path.read_bytes())
    assert records.PACKED_FEATURE in header["features"]["required"]
    entries = {t["name"]: t for t in header["tensors"]}
    assert [t["name"] for t in header["tensors"]] == list(tensors)  # the order tensors were given in
    for name, array in tensors.items():
        alone = array.nbytes > PACK_MAX_TENSOR_BYTES or array.size == 0
        assert ("packed" in entries[name]) == (not alone), name
    dtypes_of_groups = [g["dtype"] for g in header["groups"]]
    assert set(dtypes_of_groups) == {"float32", "bfloat16", "int64", "bool"}
    assert_all_equal(tz.load_file(path), tensors)
    with tz.safe_open(path) as opened:  # one at a time, in any order
        for name in reversed(list(tensors)):
            assert opened.get_tensor(name).tobytes() == tensors[name].tobytes()


def test_a_safetensors_file_of_small_tensors_comes_back_byte_for_byte(tmp_path):
    tensors = {k: v for k, v in model_like(1).items() if v.size}
    source = tmp_path / "m.safetensors"
    save_safetensors(tensors, str(source), metadata={"format": "pt"})
    tz.compress_file(source, tmp_path / "m.tzip")
    tz.decompress_file(tmp_path / "m.tzip", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == source.read_bytes()


def test_tensors_of_different_magnitudes_are_split_where_that_is_smaller():
    rng = np.random.default_rng(2)
    biases = [(rng.standard_normal(300) * 0.02).astype(np.float32) for _ in range(5)]
    norms = [(1 + rng.standard_normal(300) * 0.01).astype(np.float32) for _ in range(5)]
    arrays = [a for pair in zip(biases, norms, strict=True) for a in pair]
    assert by_magnitude([log_magnitude(a) for a in arrays]) == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert log_magnitude(np.zeros(4, np.float32)) is None
    split_cost = {(0, 2, 4, 6, 8): 10, (1, 3, 5, 7, 9): 10}
    assert choose_partition(arrays, lambda i: split_cost.get(tuple(i), 25)) == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert choose_partition(arrays, lambda i: split_cost.get(tuple(i), 19)) == [list(range(10))]
    # Measured by the writer on real codes: the split file is the smaller one here.
    tensors = {f"t{i}": a for i, a in enumerate(arrays)}
    with io.BytesIO() as split, io.BytesIO() as together:
        with TzipWriter(split) as writer:
            for name, array in tensors.items():
                writer.add(name, array, pack=True)
        assert len(split_tzip(split.getvalue())[2]["groups"]) == 2
        with TzipWriter(together) as writer:
            writer.add("all", np.concatenate(arrays), pack=True)
        assert len(split.getvalue()) < len(together.getvalue()) + 200  # a name per tensor aside, smaller


def test_reading_one_packed_tensor_reads_only_its_groups_chunks(tmp_path):
    tensors = model_like()
    path = tmp_path / "m.tzip"
    tz.save_file(tensors, path)
    _, _, header = split_tzip(path.read_bytes())
    with TzipReader(path) as reader:
        entry = reader.entry("layer2.half")
        group = reader.header.groups[entry.packed.group]
        ranges = []
        original = reader.read_range
        reader.read_range = lambda offset, length: ranges.append((offset, length)) or original(offset, length)
        assert reader.get_tensor("layer2.half").tobytes() == tensors["layer2.half"].tobytes()
    assert ranges == [(c.offset, c.length) for c in entry.chunks]
    assert set(entry.chunks) <= set(group.chunks)


def test_damage_in_a_group_names_a_tensor_in_it_and_spares_the_others(tmp_path):
    tensors = model_like()
    path = tmp_path / "m.tzip"
    tz.save_file(tensors, path)
    blob = path.read_bytes()
    _, _, header = split_tzip(blob)
    number = next(i for i, g in enumerate(header["groups"]) if g["dtype"] == "bfloat16")
    offset, length, _ = header["groups"][number]["chunks"][0]
    path.write_bytes(flip(blob, offset + length // 2))
    members = [t["name"] for t in header["tensors"] if t.get("packed", [None])[0] == number]
    with tz.safe_open(path) as opened:
        with pytest.raises(CorruptDataError, match=rf"{path}.*'{members[0]}'.*offset {offset}"):
            opened.get_tensor(members[0])
        assert opened.get_tensor("layer0.bias").tobytes() == tensors["layer0.bias"].tobytes()
        assert opened.get_tensor("layer3.weight").tobytes() == tensors["layer3.weight"].tobytes()


def test_a_reader_without_the_feature_refuses_by_name(tmp_path, monkeypatch):
    path = tmp_path / "m.tzip"
    tz.save_file(model_like(), path)
    monkeypatch.setattr(records, "KNOWN_REQUIRED_FEATURES", frozenset({records.FILES_FEATURE,
                                                                       records.REFERENCE_FEATURE}))
    with pytest.raises(HeaderError, match="'packed'.*upgrade tensorzip"):
        TzipReader(path)


def _first_packed(header):
    return next(t for t in header["tensors"] if "packed" in t)


@pytest.mark.parametrize("edit, message", [
    (lambda h: _first_packed(h).__setitem__("packed", [99, 0]), "names group #99"),
    (lambda h: _first_packed(h).__setitem__("dtype", "float16"), "but the tensor is float16"),
    (lambda h: _first_packed(h).__setitem__("packed", [_first_packed(h)["packed"][0], 10**6]), "which holds"),
    (lambda h: _first_packed(h).__setitem__("packed", [0]), "packed must be"),
    (lambda h: h["groups"][0].__setitem__("numel", h["groups"][0]["numel"] * 1000), "chunks"),
    (lambda h: h["groups"][0]["chunks"][0].__setitem__(0, 41), "group #0 chunk 0 starts at offset 41"),
    (lambda h: h["groups"][0].pop("codec"), "must have the keys dtype, numel, codec, chunks"),
    (lambda h: h["features"].__setitem__("required", []), "does not declare the feature 'packed'"),
])
def test_malformed_groups_and_packed_entries_are_refused_when_opened(tmp_path, edit, message):
    path = tmp_path / "m.tzip"
    tz.save_file(model_like(), path)

    def in_place(header):
        edit(header)

    bad = tmp_path / "bad.tzip"
    bad.write_bytes(rewrite_header(path.read_bytes(), in_place))
    with pytest.raises(tz.TensorzipError, match=message):
        TzipReader(bad)


def test_identical_small_tensors_are_stored_once_and_both_read_back(tmp_path):
    rng = np.random.default_rng(5)
    bias = (rng.standard_normal(100) * 0.02).astype(np.float32)
    tensors = {"a.bias": bias, "b.bias": bias.copy(), "c.norm": np.ones(100, np.float32)}
    tz.save_file(tensors, tmp_path / "m.tzip")
    _, _, header = split_tzip((tmp_path / "m.tzip").read_bytes())
    entries = {t["name"]: t for t in header["tensors"]}
    assert "packed" in entries["a.bias"] and entries["b.bias"].get("same_as") == "a.bias"
    assert_all_equal(tz.load_file(tmp_path / "m.tzip"), tensors)


def test_past_the_held_bytes_small_tensors_are_coded_alone(tmp_path, monkeypatch):
    from tensorzip.container import writer as writer_module

    monkeypatch.setattr(writer_module, "PACK_HOLD_BYTES", 3000)
    tensors = model_like(3)
    tz.save_file(tensors, tmp_path / "m.tzip")
    _, _, header = split_tzip((tmp_path / "m.tzip").read_bytes())
    packed = [t["name"] for t in header["tensors"] if "packed" in t]
    alone_small = [t["name"] for t in header["tensors"] if "chunks" in t and t["name"].endswith(".bias")]
    assert packed and alone_small
    assert_all_equal(tz.load_file(tmp_path / "m.tzip"), tensors)


def test_streaming_decompress_and_a_folder_archive_keep_groups_before_files(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    tensors = {k: v for k, v in model_like(4).items() if v.size}
    save_safetensors(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"hidden": 200}')
    tz.compress_file(folder, tmp_path / "model.tzip")
    _, _, header = split_tzip((tmp_path / "model.tzip").read_bytes())
    assert header["groups"] and header["files"]
    tz.decompress_file(tmp_path / "model.tzip", tmp_path / "back")
    assert (tmp_path / "back" / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    assert (tmp_path / "back" / "config.json").read_text() == '{"hidden": 200}'


GOLDEN = __import__("pathlib").Path(__file__).parent / "golden" / "packed_tensors_v1"


def test_golden_packed_file_decodes_to_its_source_byte_for_byte(tmp_path):
    tz.decompress_file(GOLDEN / "packed.tzip", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == (GOLDEN / "source.safetensors").read_bytes()
    fields, _, header = split_tzip((GOLDEN / "packed.tzip").read_bytes())
    assert fields["flags"] == 1 and header["features"]["required"] == ["packed"]
    assert len([g for g in header["groups"] if g["dtype"] == "float32"]) >= 2  # split by magnitude
    from safetensors.numpy import load_file as load_safetensors

    original = load_safetensors(str(GOLDEN / "source.safetensors"))
    loaded = tz.load_file(GOLDEN / "packed.tzip")
    assert_all_equal(loaded, {name: original[name] for name in loaded})


def test_the_encoder_writes_the_golden_packed_file_again(tmp_path):
    """Same source -> the same bytes: grouping, magnitude bands and header compression are
    deterministic. If this must change on purpose, add a new golden folder."""
    tz.compress_file(GOLDEN / "source.safetensors", tmp_path / "again.tzip")
    assert (tmp_path / "again.tzip").read_bytes() == (GOLDEN / "packed.tzip").read_bytes()


def test_packed_tensors_that_overlap_are_refused_and_ls_shows_each_tensors_share(tmp_path, capsys):
    path = tmp_path / "m.tzip"
    tz.save_file(model_like(), path)

    def overlap(header):
        entries = {t["name"]: t for t in header["tensors"]}
        entries["layer2.bias"]["packed"] = list(entries["layer1.bias"]["packed"])

    bad = tmp_path / "bad.tzip"
    bad.write_bytes(rewrite_header(path.read_bytes(), overlap))
    with pytest.raises(HeaderError, match="overlap in group"):
        TzipReader(bad)
    contents = tz.contents(path) if hasattr(tz, "contents") else None
    with TzipReader(path) as reader:
        shares = sum(e.own_stored_bytes for e in reader.header.tensors.values() if e.packed is not None)
        groups = sum(g.stored_bytes for g in reader.header.groups)
    assert groups <= shares <= groups + len(model_like())  # each share rounded up, never the whole group
    if contents is not None:  # a list of tensors, each with its own stored bytes
        assert all(t["stored_bytes"] < 4 * t["original_bytes"] + 64 for t in contents)
