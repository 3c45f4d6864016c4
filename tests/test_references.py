"""Tensors coded against an earlier tensor of the same file (format feature "reference"):
mixed-precision checkpoints keep BF16 (or FP16) weights beside the FP32 master they round from."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.codecs.residual import Reference, convert
from tensorzip.container import records
from tensorzip.container.reader import TzipReader
from tensorzip.container.writer import TzipWriter
from tensorzip.dtypes import by_name
from tensorzip.errors import CorruptDataError, HeaderError, TensorzipError

from .conftest import rewrite_header

GOLDEN = Path(__file__).parent / "golden" / "tensor_reference_v1"


def _master(shape, seed=0) -> np.ndarray:
    """FP32 weights with the awkward values: NaNs with payloads, infinities, signed zeros,
    subnormals, exact rounding ties and values that overflow BF16/FP16 when rounded."""
    rng = np.random.default_rng(seed)
    master = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    bits = master.reshape(-1).view(np.uint32)
    special = np.array([0x7FC00001, 0xFFA00000, 0x7F800000, 0xFF800000, 0x00000000, 0x80000000, 0x00000001,
                        0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x477FF000, 0xC77FF000], dtype=np.uint32)
    bits[7 : 7 + special.size] = special
    return master


def _entries(path) -> dict[str, dict]:
    with TzipReader(path) as reader:
        return {name: e.reference.to_json() if e.reference else None for name, e in reader.header.tensors.items()}


@pytest.mark.parametrize("narrow", ["bfloat16", "float16"])
@pytest.mark.parametrize("master_first", [False, True])
def test_mixed_precision_pairs_round_trip_bit_for_bit(tmp_path, narrow, master_first):
    """Through a .safetensors file (which orders tensors its own way) and save_file/load_file."""
    master = {f"layer{i}.weight": _master((96, 128), seed=i) for i in range(3)}
    low = {name: convert(a.reshape(-1), by_name(narrow)).reshape(a.shape) for name, a in master.items()}
    tensors = {}
    for name in master:
        pair = [(f"master.{name}", master[name]), (f"model.{name}", low[name])]
        tensors.update(reversed(pair) if not master_first else pair)
    source = tmp_path / "mixed.safetensors"
    save_safetensors(tensors, source)
    tz.compress_file(source, tmp_path / "mixed.tzip")
    references = _entries(tmp_path / "mixed.tzip")
    with TzipReader(tmp_path / "mixed.tzip") as reader:
        order = list(reader.header.tensors)  # safetensors' own order, not the dict's
    for name in master:
        first, second = sorted([f"master.{name}", f"model.{name}"], key=order.index)
        assert references[first] is None and references[second]["tensor"] == first, references
    tz.decompress_file(tmp_path / "mixed.tzip", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == source.read_bytes()
    loaded = tz.load_file(tmp_path / "mixed.tzip")
    for name, array in tensors.items():
        assert loaded[name].tobytes() == array.tobytes(), name
    with tz.safe_open(tmp_path / "mixed.tzip", framework="np") as f:  # one tensor alone decodes its reference
        assert f.get_tensor(second).tobytes() == tensors[second].tobytes()


def test_the_reference_is_what_makes_the_second_copy_small(tmp_path):
    master = _master((512, 256))
    model = convert(master.reshape(-1), by_name("bfloat16")).reshape(master.shape)
    tz.save_file({"model.w": model, "master.w": master}, tmp_path / "both.tzip")
    tz.save_file({"model.w": model}, tmp_path / "model.tzip")
    tz.save_file({"master.w": master}, tmp_path / "master.tzip")
    both, alone = (tmp_path / "both.tzip").stat().st_size, (tmp_path / "master.tzip").stat().st_size
    model_alone = (tmp_path / "model.tzip").stat().st_size
    assert _entries(tmp_path / "both.tzip")["master.w"] == {"mode": "sub", "tensor": "model.w"}
    assert both - model_alone < 0.75 * alone  # the master costs 16 of its 32 bits, not ~26


def test_no_reference_where_it_does_not_pay(tmp_path):
    rng = np.random.default_rng(3)
    unrelated = {"model.w": rng.standard_normal((128, 64)).astype(ml_dtypes.bfloat16),
                 "master.w": rng.standard_normal((128, 64)).astype(np.float32)}
    tz.save_file(unrelated, tmp_path / "u.tzip")
    assert _entries(tmp_path / "u.tzip") == {"model.w": None, "master.w": None}
    with TzipReader(tmp_path / "u.tzip") as reader:
        assert records.REFERENCE_FEATURE not in reader.header.required_features


def _reference_file(tmp_path) -> Path:
    master = _master((256, 160))  # each copy over 64 KiB: coded alone, not in a group
    model = convert(master.reshape(-1), by_name("bfloat16")).reshape(master.shape)
    tz.save_file({"model.w": model, "master.w": master}, tmp_path / "r.tzip")
    assert _entries(tmp_path / "r.tzip")["master.w"] is not None
    return tmp_path / "r.tzip"


def test_an_old_reader_refuses_the_file_by_name(tmp_path, monkeypatch):
    path = _reference_file(tmp_path)
    monkeypatch.setattr(records, "KNOWN_REQUIRED_FEATURES", frozenset({records.FILES_FEATURE}))
    with pytest.raises(HeaderError, match="'reference'.*upgrade tensorzip"):
        TzipReader(path)


def test_damage_to_the_reference_fails_the_tensor_coded_against_it(tmp_path):
    path = _reference_file(tmp_path)
    with TzipReader(path) as reader:
        first = reader.header.tensors["model.w"].chunks[0]
    data = bytearray(path.read_bytes())
    data[first.offset + first.length // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="model.w"):
        tz.load_file(path)
    with tz.safe_open(path, framework="np") as f, pytest.raises(CorruptDataError, match="model.w"):
        f.get_tensor("master.w")


def test_the_writer_refuses_a_reference_it_could_not_read_back(tmp_path):
    with TzipWriter(tmp_path / "w.tzip") as writer:
        with pytest.raises(TensorzipError, match="not added before"):
            writer.add("a", np.zeros(8, np.float32), delta=Reference("sub", "missing"))
        writer.add("b", np.zeros(8, np.int32))
        with pytest.raises(TensorzipError, match="cannot be coded against"):
            writer.add("c", np.zeros(8, np.float32), delta=Reference("sub", "b"))
        writer.add("d", np.zeros(4, ml_dtypes.bfloat16))
        with pytest.raises(TensorzipError, match="cannot be coded against"):
            writer.add("e", np.zeros(8, np.float32), delta=Reference("sub", "d"))


def test_golden_reference_file_stays_readable(tmp_path):
    """Written by tests/golden/tensor_reference_v1/make_golden.py when the feature was added."""
    expected = np.load(GOLDEN / "expected.npz")
    references = _entries(GOLDEN / "mixed.tzip")
    assert references["master.w"] == {"mode": "sub", "tensor": "model.w"}
    assert references["model.v"] is not None
    loaded = tz.load_file(GOLDEN / "mixed.tzip")
    for name in expected.files:
        assert loaded[name].reshape(-1).view(np.uint8).tobytes() == expected[name].tobytes(), name


def _later(header):  # the tensor named comes after the one naming it
    for t in header["tensors"]:
        t.pop("reference", None)
        if t["name"] == "model.w":
            t["reference"] = {"mode": "sub", "tensor": "master.w"}


def _no_feature(header):
    header.pop("features")


def _other_size(header):
    for t in header["tensors"]:
        if t["name"] == "master.w":
            t["shape"] = [128, 64]


def _unknown_mode(header):
    for t in header["tensors"]:
        if t.get("reference"):
            t["reference"]["mode"] = "add"


def _self(header):
    for t in header["tensors"]:
        if t.get("reference"):
            t["reference"]["tensor"] = t["name"]


@pytest.mark.parametrize("edit, message", [
    (_later, "not an earlier tensor"), (_no_feature, "does not declare the feature 'reference'"),
    (_other_size, "cannot be coded against"), (_unknown_mode, "unknown reference mode"),
    (_self, "not an earlier tensor"),
])
def test_a_header_with_a_bad_reference_is_refused_when_opened(tmp_path, edit, message):
    bad = tmp_path / "bad.tzip"
    bad.write_bytes(rewrite_header(_reference_file(tmp_path).read_bytes(), edit))
    with pytest.raises(HeaderError, match=message):
        TzipReader(bad)


def test_a_mixed_precision_training_checkpoint_restores_byte_for_byte(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(96, 128), torch.nn.GELU(), torch.nn.Linear(128, 96))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        model(torch.randn(8, 96)).square().mean().backward()
        optimizer.step()
    master = model.state_dict()
    checkpoint = {"model": {k: v.to(torch.bfloat16) for k, v in master.items()}, "master": master,
                  "optimizer": optimizer.state_dict(), "step": 3}
    torch.save(checkpoint, tmp_path / "ckpt.pt")
    tz.compress_file(tmp_path / "ckpt.pt", tmp_path / "ckpt.tzip")
    references = _entries(tmp_path / "ckpt.tzip")
    assert references["master.0.weight"] == {"mode": "sub", "tensor": "model.0.weight"}
    tz.decompress_file(tmp_path / "ckpt.tzip", tmp_path / "back.pt")
    assert (tmp_path / "back.pt").read_bytes() == (tmp_path / "ckpt.pt").read_bytes()


def test_conversions_follow_the_format_for_every_narrow_bit_pattern():
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    widened = convert(every.view(ml_dtypes.bfloat16), by_name("float32")).view(np.uint32)
    assert np.array_equal(widened, every.astype(np.uint32) << 16)
    halves = every.view(np.float16)
    exact = halves.astype(np.float32)
    from_bits = convert(halves, by_name("float32"))
    nan = np.isnan(exact)
    assert np.array_equal(from_bits.view(np.uint32)[~nan], exact.view(np.uint32)[~nan])
    assert set(from_bits.view(np.uint32)[nan].tolist()) == {0x7FC00000}
    random_bits = np.random.default_rng(7).integers(0, 1 << 32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    wide = np.concatenate([_master((4096,)).reshape(-1), random_bits.view(np.float32)])
    for name, nan_bits in (("bfloat16", 0x7FC0), ("float16", 0x7E00)):
        narrow = convert(wide, by_name(name)).view(np.uint16)
        with np.errstate(over="ignore"):
            numpy_way = wide.astype(ml_dtypes.bfloat16 if name == "bfloat16" else np.float16).view(np.uint16)
        is_nan = np.isnan(wide)
        assert np.array_equal(narrow[~is_nan], numpy_way[~is_nan]), name
        assert set(narrow[is_nan].tolist()) == {nan_bits}


def _copies_file(tmp_path, copies=4):
    """A checkpoint of several perturbed copies of one model: later copies refer to the first."""
    rng = np.random.default_rng(7)
    first = {f"layer{i}.weight": (rng.standard_normal((256, 256)) * 0.05).astype(np.float32) for i in range(3)}
    tensors = {}
    for c in range(copies):
        for name, a in first.items():
            noise = rng.standard_normal(a.shape).astype(np.float32) * np.float32(1e-3)
            tensors[f"copy{c}.{name}"] = a if c == 0 else a + a * noise
    path = tmp_path / "copies.tzip"
    tz.save_file(tensors, path)
    assert sum(r is not None for r in _entries(path).values()) >= 3, "the copies were not coded as references"
    return path, tensors


def test_a_reference_target_is_decoded_once_per_pass(tmp_path, monkeypatch):
    """Batch after batch, the first copy's tensors are taken from where they were decoded,
    not decoded (or fetched) again for every later copy."""
    path, tensors = _copies_file(tmp_path)
    with TzipReader(path) as reader:
        read = []
        original = reader.read_stored
        monkeypatch.setattr(reader, "read_stored",
                            lambda entries, *rest: read.extend(e.name for e in entries) or original(entries, *rest))
        got = dict(reader.iter_tensors(batch_bytes=1))
    assert sorted(read) == sorted(tensors), "some tensor was read more than once"
    for name, array in tensors.items():
        assert got[name].tobytes() == array.tobytes()


def test_a_target_changed_by_the_caller_is_decoded_again(tmp_path):
    """iter_tensors hands its arrays to the caller: one changed in place before a later copy
    is restored must not leak into that copy."""
    path, tensors = _copies_file(tmp_path)
    with TzipReader(path) as reader:
        for name, array in reader.iter_tensors(batch_bytes=1):
            assert array.tobytes() == tensors[name].tobytes(), name
            array *= 2  # the caller scales each tensor in place as it streams


def test_streamed_file_outputs_restore_references_from_kept_copies(tmp_path):
    """decompress_file reuses one buffer for batch after batch: the kept targets are copies."""
    path, tensors = _copies_file(tmp_path)
    out = tmp_path / "copies.safetensors"
    tz.decompress_file(path, out)
    from safetensors.numpy import load_file as load_safetensors
    loaded = load_safetensors(out)
    assert {n: a.tobytes() for n, a in loaded.items()} == {n: a.tobytes() for n, a in tensors.items()}


def test_streamed_file_output_cuts_tensors_into_pieces_but_keeps_targets_whole(tmp_path, monkeypatch):
    """decompress_file to a path decodes large tensors a few chunks at a time (so reading,
    decoding and writing overlap), except those others are coded against: each of those is
    decoded whole, once, and the file still comes back byte for byte."""
    from safetensors.numpy import load_file as load_safetensors

    from tensorzip import files

    monkeypatch.setattr(files, "PIPELINED_PIECE_BYTES", 1 << 20)  # pieces of two 512 KiB chunks
    rng = np.random.default_rng(8)
    first = (rng.standard_normal((512, 1024)) * 0.05).astype(np.float32)  # 2 MiB: four chunks
    tensors = {"model.w": first,  # the same name after the first dot: "copy.w" is coded against it
               "copy.w": first + first * rng.standard_normal(first.shape).astype(np.float32) * np.float32(1e-3),
               "alone": rng.standard_normal((512, 1024)).astype(np.float32)}
    path = tmp_path / "copy_and_one.tzip"
    tz.save_file(tensors, path)
    with TzipReader(path) as reader:
        references = {n: e.reference.tensor for n, e in reader.header.tensors.items() if e.reference is not None}
    whole = set(references) | set(references.values())  # coded against another tensor, or coded against
    assert whole == {"model.w", "copy.w"}
    decoded: list[tuple[str, int]] = []
    original = files._decode_batch_into

    def record(reader, batch, *rest, **options):
        decoded.extend((entry.name, entry.nbytes) for entry in batch)
        return original(reader, batch, *rest, **options)

    monkeypatch.setattr(files, "_decode_batch_into", record)
    out = tmp_path / "copies.safetensors"
    tz.decompress_file(path, out, threads=1)
    loaded = load_safetensors(out)
    assert {n: a.tobytes() for n, a in loaded.items()} == {n: a.tobytes() for n, a in tensors.items()}
    for name, array in tensors.items():
        sizes = [size for decoded_name, size in decoded if decoded_name == name]
        if name in whole:
            assert sizes == [array.nbytes], name  # whole, once
        else:
            assert len(sizes) > 1 and sum(sizes) == array.nbytes, name  # in pieces


def test_targets_over_the_memory_budget_are_decoded_again_not_kept(tmp_path, monkeypatch):
    """A reader with little memory to spare keeps no targets: they are read again for each
    tensor coded against them, and every tensor still comes back exact."""
    from tensorzip.container.header import ReadLimits

    path, tensors = _copies_file(tmp_path)
    with TzipReader(path, limits=ReadLimits(max_memory_bytes=1 << 20)) as reader:
        assert reader.targets_budget() == 1 << 18  # each target is 256 KiB + a little: none fits
        read = []
        original = reader.read_stored
        monkeypatch.setattr(reader, "read_stored",
                            lambda entries, *rest: read.extend(e.name for e in entries) or original(entries, *rest))
        got = dict(reader.iter_tensors(batch_bytes=1))
    assert len(read) > len(tensors), "targets were kept beyond the budget"
    assert {n: a.tobytes() for n, a in got.items()} == {n: a.tobytes() for n, a in tensors.items()}


def test_a_target_written_to_while_it_is_read_is_caught_after_the_use(tmp_path, monkeypatch):
    """The caller's thread may write to a yielded target between the check before a use and
    the use itself: the check after it sees the change and the tensor is decoded again."""
    from tensorzip.container.decoded_targets import DecodedTargets

    path, tensors = _copies_file(tmp_path)
    original_get = DecodedTargets.get

    def get_then_race(self, name):
        array = original_get(self, name)
        if array is not None:
            array += 1  # as if another thread wrote to it just after the check
        return array

    monkeypatch.setattr(DecodedTargets, "get", get_then_race)
    with TzipReader(path) as reader:
        for name, array in reader.iter_tensors(batch_bytes=1):
            if not name.startswith("copy0."):
                assert array.tobytes() == tensors[name].tobytes(), name


def test_a_target_whose_uses_all_lie_in_its_own_batch_is_not_kept(tmp_path):
    from tensorzip.container.decoded_targets import DecodedTargets

    path, _ = _copies_file(tmp_path, copies=2)
    with TzipReader(path) as reader:
        entries = [reader.entry(n) for n in reader.header.tensors]
    targets = DecodedTargets(entries, private_copies=True)
    one = np.zeros(8, np.float32)
    targets.keep("copy0.layer0.weight", one, uses_here=1)
    assert targets.held_bytes == 0
    targets.keep("copy0.layer0.weight", one)
    assert targets.held_bytes == one.nbytes
    targets.used("copy0.layer0.weight")
    assert targets.held_bytes == 0
