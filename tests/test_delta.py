"""Coding against a base (fine-tunes, chains of training checkpoints) and storing
identical tensors once: bit-exact round trips, and clear errors when the base is
missing or is not the one the file was made with."""

from __future__ import annotations

import json
import shutil

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip import dtypes
from tensorzip.cli.main import main
from tensorzip.codecs.residual import MODES, choose_delta, residual, restore
from tensorzip.container import TzipReader
from tensorzip.errors import BaseMismatchError, BaseRequiredError, HeaderError
from tensorzip.files import compress_file, decompress_file, verify_file

from .conftest import rewrite_header, split_tzip

FLOATS = ("bfloat16", "float16", "float32", "float64", "float8_e4m3fn", "float8_e5m2")


def random_bits(rng, spec, count):
    if spec.name == "bool":
        return rng.random(count) < 0.5
    return rng.integers(0, 256, count * spec.itemsize, dtype=np.uint8).view(spec.numpy_dtype)


def fine_tuned(rng, base: np.ndarray) -> np.ndarray:
    """A small step away from ``base``, as training makes it (a few ulps for floats)."""
    if base.dtype == np.bool_:
        flip = rng.random(base.shape) < 0.02
        return base ^ flip
    if dtypes.by_numpy(base.dtype).is_float:
        wide = base.astype(np.float64)
        return (wide + rng.standard_normal(base.shape) * np.abs(wide) * 0.01).astype(base.dtype)
    step = rng.integers(-2, 3, base.shape)
    return (base.astype(np.int64) + step).astype(base.dtype)  # wraps for narrow ints: still bit-exact


def base_tensor(rng, spec, shape=(64, 48)):
    if spec.is_float:
        return (rng.standard_normal(shape) * 0.05).astype(spec.numpy_dtype)
    if spec.name == "bool":
        return rng.random(shape) < 0.3
    info = np.iinfo(spec.numpy_dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape).astype(spec.numpy_dtype)


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", dtypes.SUPPORTED_DTYPES)
def test_residual_is_undone_bit_exactly_for_every_bit_pattern(name, mode):
    """NaNs, infinities, negative zero, extremes: the transforms are integer operations on the bits."""
    rng = np.random.default_rng(1)
    spec = dtypes.by_name(name)
    a, b = random_bits(rng, spec, 4099), random_bits(rng, spec, 4099)
    stored = residual(a, b, mode, spec)
    assert stored.dtype == a.dtype and stored.shape == a.shape
    restore(stored, b, mode, spec)
    assert same_bytes(stored, a)


@pytest.mark.parametrize("name", FLOATS)
def test_sub_makes_small_steps_small_across_zero(name):
    spec = dtypes.by_name(name)
    values = np.array([0.0, -0.0, 1.0, -1.0, 0.5], dtype=np.float32).astype(spec.numpy_dtype)
    bits = values.view(f"u{spec.itemsize}")
    up = (bits + 1).view(spec.numpy_dtype)  # one ulp away from zero, either sign
    stored = residual(up, values, "sub", spec).view(f"u{spec.itemsize}")
    # Moving one ulp outwards: +1 for positives, -1 for negatives, zigzagged to 2 and 1.
    assert stored.tolist() == [2, 1, 2, 1, 2]


def test_choice_keeps_plain_coding_when_the_base_does_not_help():
    rng = np.random.default_rng(2)
    spec = dtypes.by_name("float32")
    unrelated = rng.standard_normal(50000).astype(np.float32)
    other = rng.standard_normal(50000).astype(np.float32)
    assert choose_delta(unrelated, other, spec) == (None, 0)
    near = (other * np.float32(1.0001)).astype(np.float32)
    mode, saved = choose_delta(near, other, spec)
    assert mode in MODES and 0 < saved < near.nbytes


def test_choices_taken_together_are_the_choices_taken_alone(tmp_path):
    """``choose_deltas`` (many tensors in one native call, on threads) decides as
    ``choose_delta`` does one tensor at a time, and a file written against a base with more
    tensors than one window of choices (writing/plan.py) records exactly those modes."""
    from tensorzip.codecs.residual import choose_deltas
    from tensorzip.writing.plan import BASE_CHOICE_TENSORS

    rng = np.random.default_rng(11)
    base, tuned = {}, {}
    for i in range(BASE_CHOICE_TENSORS + 7):
        name = dtypes.SUPPORTED_DTYPES[i % len(dtypes.SUPPORTED_DTYPES)]
        spec = dtypes.by_name(name)
        size = (0, 1, 300, 70000, 140000)[i % 5]
        b = base_tensor(rng, spec, size) if size else np.zeros(size, spec.numpy_dtype)
        base[f"t{i}"] = b
        tuned[f"t{i}"] = random_bits(rng, spec, size) if i % 3 == 0 else fine_tuned(rng, b)
    pairs = [(tuned[n], base[n], dtypes.by_numpy(base[n].dtype)) for n in base]
    alone = [choose_delta(*pair) for pair in pairs]
    assert choose_deltas(pairs, threads=2) == alone
    assert {mode for mode, _ in alone} >= {None, "xor"}  # the cases differ
    base_path = tmp_path / "base.safetensors"
    save_safetensors(base, str(base_path))
    tz.save_file(tuned, tmp_path / "t.tzip", base=base_path, threads=2)
    with TzipReader(tmp_path / "t.tzip") as reader:
        for (name, (mode, _)) in zip(base, alone, strict=True):
            entry = reader.entry(name)
            if entry.same_as is None and entry.packed is None and entry.reference is None:
                assert (entry.delta.mode if entry.delta else None) == mode, name
    loaded = tz.load_file(tmp_path / "t.tzip", base=base_path)
    for name, array in tuned.items():
        assert loaded[name].tobytes() == array.tobytes(), name


@pytest.fixture
def family(tmp_path):
    """A base .safetensors of every dtype, and a fine-tune of it."""
    rng = np.random.default_rng(3)
    base = {f"t.{name}": base_tensor(rng, dtypes.by_name(name)) for name in dtypes.SUPPORTED_DTYPES}
    tuned = {name: fine_tuned(rng, array) for name, array in base.items()}
    base_path = tmp_path / "base.safetensors"
    save_safetensors(base, str(base_path))
    return base_path, base, tuned


@pytest.mark.parametrize("via", ["save_file", "compress_file"])
def test_every_dtype_round_trips_against_its_base(tmp_path, family, via):
    base_path, base, tuned = family
    out = tmp_path / "tuned.tzip"
    plain = tmp_path / "plain.tzip"
    if via == "save_file":
        tz.save_file(tuned, out, base=base_path)
        tz.save_file(tuned, plain)
        back = tz.load_file(out, base=base_path)
        assert set(back) == set(tuned)
        for name in tuned:
            assert same_bytes(back[name], tuned[name]), name
    else:
        source = tmp_path / "tuned.safetensors"
        save_safetensors(tuned, str(source))
        report = compress_file(source, out, base=base_path)
        assert report.base == str(base_path)
        compress_file(source, plain)
        decompress_file(out, tmp_path / "back.safetensors", base=base_path)
        assert (tmp_path / "back.safetensors").read_bytes() == source.read_bytes()
        verify_file(out, against=source, base=base_path)
    with TzipReader(out) as reader:
        assert reader.base_name == "base.safetensors"
        modes = {e.name: e.delta.mode for e in reader.header.tensors.values() if e.delta}
    assert all(f"t.{name}" in modes for name in ("bfloat16", "float32", "float64", "int32", "int64")), modes
    assert out.stat().st_size < plain.stat().st_size


def test_missing_base_names_the_expected_file(tmp_path, family):
    base_path, _, tuned = family
    out = tmp_path / "tuned.tzip"
    tz.save_file(tuned, out, base=base_path)
    base_path.unlink()
    with pytest.raises(BaseRequiredError, match=r"base\.safetensors"):
        tz.load_file(out)
    with pytest.raises(BaseRequiredError, match=r"base\.safetensors"):
        tz.load_file(out, base=tmp_path / "elsewhere.safetensors")
    with pytest.raises(BaseRequiredError, match=r"coded against base 'base\.safetensors'"):
        TzipReader(out.read_bytes()).get_tensor("t.float32")


def test_base_found_beside_the_file(tmp_path, family):
    base_path, _, tuned = family
    tz.save_file(tuned, tmp_path / "tuned.tzip", base=base_path)
    back = tz.load_file(tmp_path / "tuned.tzip")  # base.safetensors sits beside it
    assert all(same_bytes(back[n], tuned[n]) for n in tuned)


def test_wrong_base_is_refused(tmp_path, family):
    base_path, base, tuned = family
    out = tmp_path / "tuned.tzip"
    tz.save_file(tuned, out, base=base_path)
    other = tmp_path / "other.safetensors"
    rng = np.random.default_rng(99)
    save_safetensors({n: base_tensor(rng, dtypes.by_numpy(a.dtype)) for n, a in base.items()}, str(other))
    with pytest.raises(BaseMismatchError, match=r"coded against base 'base\.safetensors'"):
        tz.load_file(out, base=other)


def test_base_with_one_tensor_changed(tmp_path, family):
    base_path, base, tuned = family
    out = tmp_path / "tuned.tzip"
    tz.save_file(tuned, out, base=base_path)
    changed = dict(base)
    victim = "t.float32"
    changed[victim] = changed[victim].copy()
    changed[victim].flat[7] = np.float32(123.0)
    save_safetensors(changed, str(base_path))
    with pytest.raises(BaseMismatchError, match=rf"tensor '{victim}' of .*differs"):
        tz.load_file(out)
    with tz.safe_open(out) as f:  # the others still decode against it
        assert same_bytes(f.get_tensor("t.int64"), tuned["t.int64"])


def test_tensors_added_removed_or_reshaped_are_coded_plainly(tmp_path, family):
    base_path, base, tuned = family
    rng = np.random.default_rng(4)
    tuned = dict(tuned)
    del tuned["t.int16"]  # removed
    tuned["new.head"] = base_tensor(rng, dtypes.by_name("float32"), (10, 48))  # added
    tuned["t.uint8"] = tuned["t.uint8"].reshape(48, 64)  # reshaped
    tuned["t.float16"] = tuned["t.float16"].astype(np.float32)  # dtype changed
    out = tmp_path / "tuned.tzip"
    tz.save_file(tuned, out, base=base_path)
    with TzipReader(out) as reader:
        for name in ("new.head", "t.uint8", "t.float16"):
            assert reader.entry(name).delta is None, name
        assert reader.entry("t.float32").delta is not None
    back = tz.load_file(out, base=base_path)
    assert set(back) == set(tuned)
    assert all(same_bytes(back[n], tuned[n]) for n in tuned)


def test_chain_of_training_checkpoints(tmp_path):
    """ckpt_1 against the base, ckpt_2 against ckpt_1.tzip, ckpt_3 against ckpt_2.tzip."""
    rng = np.random.default_rng(5)
    steps = [{"w": (rng.standard_normal((128, 64)) * 0.05).astype(ml_dtypes.bfloat16),
              "b": (rng.standard_normal(64) * 0.01).astype(np.float32)}]
    for _ in range(3):
        steps.append({n: fine_tuned(rng, a) for n, a in steps[-1].items()})
    save_safetensors(steps[0], str(tmp_path / "ckpt_0.safetensors"))
    previous = tmp_path / "ckpt_0.safetensors"
    for k in (1, 2, 3):
        source = tmp_path / f"ckpt_{k}.safetensors"
        save_safetensors(steps[k], str(source))
        compress_file(source, tmp_path / f"ckpt_{k}.tzip", base=previous)
        previous = tmp_path / f"ckpt_{k}.tzip"
    for k in (1, 2, 3):
        source = tmp_path / f"ckpt_{k}.safetensors"
        decompress_file(tmp_path / f"ckpt_{k}.tzip", tmp_path / "out.safetensors")  # links found beside
        assert (tmp_path / "out.safetensors").read_bytes() == source.read_bytes()
    # Moved elsewhere, the link names the base it is missing; given explicitly, it decodes.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(tmp_path / "ckpt_3.tzip", elsewhere)
    with pytest.raises(BaseRequiredError, match=r"ckpt_2\.tzip"):
        tz.load_file(elsewhere / "ckpt_3.tzip")
    back = tz.load_file(elsewhere / "ckpt_3.tzip", base=tmp_path / "ckpt_2.tzip")
    assert all(same_bytes(back[n], steps[3][n]) for n in steps[3])
    # A missing link deeper down is named too.
    (tmp_path / "ckpt_1.tzip").unlink()
    with pytest.raises(BaseRequiredError, match=r"ckpt_1\.tzip"):
        tz.load_file(tmp_path / "ckpt_3.tzip")


def test_identical_tensors_are_stored_once(tmp_path):
    rng = np.random.default_rng(6)
    embedding = (rng.standard_normal((300, 64)) * 0.05).astype(np.float32)
    tensors = {
        "embed.weight": embedding,
        "lm_head.weight": embedding.copy(),  # tied
        "lookalike": embedding.view(np.int32),  # same bytes, another dtype: not shared
        "other": embedding + np.float32(1),
    }
    out, single = tmp_path / "tied.tzip", tmp_path / "single.tzip"
    tz.save_file(tensors, out)
    tz.save_file({"embed.weight": embedding, "lookalike": tensors["lookalike"], "other": tensors["other"]}, single)
    with TzipReader(out) as reader:
        assert reader.entry("lm_head.weight").same_as == "embed.weight"
        assert reader.entry("lookalike").same_as is None
        doc = json.loads(_header_bytes(out))
    assert {"name", "dtype", "shape", "same_as"} == set(doc["tensors"][1])
    assert out.stat().st_size < single.stat().st_size + 200  # the twin costs a header line
    back = tz.load_file(out)
    assert all(same_bytes(back[n], tensors[n]) for n in tensors)
    with tz.safe_open(out) as f:
        assert same_bytes(f.get_tensor("lm_head.weight"), embedding)


def test_dedup_reported_and_restored_byte_for_byte(tmp_path):
    rng = np.random.default_rng(7)
    shared = rng.standard_normal((200, 32)).astype(np.float32)
    source = tmp_path / "m.safetensors"
    save_safetensors({"a": shared, "b": rng.standard_normal(10).astype(np.float32), "c": shared.copy()},
                     str(source))
    report = compress_file(source, tmp_path / "m.tzip")
    assert report.dedup_saved_bytes == shared.nbytes
    decompress_file(tmp_path / "m.tzip", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == source.read_bytes()


def test_twins_of_delta_tensors(tmp_path, family):
    base_path, _, tuned = family
    tuned = dict(tuned, copy_of_f32=tuned["t.float32"].copy())
    tz.save_file(tuned, tmp_path / "t.tzip", base=base_path)
    with TzipReader(tmp_path / "t.tzip") as reader:
        assert reader.entry("copy_of_f32").same_as == "t.float32"
    back = tz.load_file(tmp_path / "t.tzip")
    assert same_bytes(back["copy_of_f32"], tuned["t.float32"])


def _header_bytes(path) -> bytes:
    """The header's JSON bytes (inflated when the file stores it compressed)."""
    return json.dumps(split_tzip(path.read_bytes())[2]).encode()


def _rewrite_header(path, edit) -> None:
    """Apply ``edit`` to the parsed header and write it back with fresh checksums."""
    def in_place(doc):
        edit(doc)  # its return value (e.g. of dict.pop) is not a new header

    path.write_bytes(rewrite_header(path.read_bytes(), in_place))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("base"), "does not name"),
        (lambda d: d["tensors"][0]["delta"].__setitem__("mode", "add"), "unknown delta mode"),
        (lambda d: d["tensors"][0]["delta"].__setitem__("base_digest", "md5:00"), "base_digest"),
        (lambda d: d["tensors"][0].__setitem__("same_as", "x"), "must have the keys"),
        (lambda d: d["tensors"].insert(0, {"name": "z", "dtype": "float32", "shape": [64, 48],
                                           "same_as": "t.float32"}), "not an earlier stored tensor"),
        (lambda d: d["tensors"].append({"name": "z", "dtype": "int8", "shape": [64, 48],
                                        "same_as": "t.float32"}), "dtype or shape differs"),
    ],
)
def test_malformed_base_and_twin_entries(tmp_path, family, edit, message):
    base_path, _, tuned = family
    out = tmp_path / "t.tzip"
    tz.save_file({"t.float32": tuned["t.float32"]}, out, base=base_path)
    _rewrite_header(out, edit)
    with pytest.raises(HeaderError, match=message):
        TzipReader(out)


def test_cli_compress_and_decompress_with_base(tmp_path, family, capsys):
    base_path, _, tuned = family
    source = tmp_path / "tuned.safetensors"
    save_safetensors(tuned, str(source))
    target = tmp_path / "tuned.tzip"
    assert main(["compress", str(source), "-o", str(target), "--base", str(base_path)]) == 0
    assert "coded against" in capsys.readouterr().out
    assert main(["info", str(target)]) == 0
    assert "against base" in capsys.readouterr().out
    moved = tmp_path / "moved.safetensors"
    base_path.rename(moved)
    assert main(["decompress", str(target), "-o", str(tmp_path / "x.safetensors")]) == 1
    assert "base.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert main(["decompress", str(target), "-o", str(tmp_path / "x.safetensors"), "--base", str(moved)]) == 0
    assert (tmp_path / "x.safetensors").read_bytes() == source.read_bytes()
    assert main(["verify", str(target), "--against", str(source), "--base", str(moved)]) == 0


def test_compressing_onto_its_own_base_is_refused(tmp_path, family):
    base_path, _, tuned = family
    source = tmp_path / "tuned.safetensors"
    save_safetensors(tuned, str(source))
    compress_file(source, tmp_path / "ckpt.tzip", base=base_path)
    before = (tmp_path / "ckpt.tzip").read_bytes()
    with pytest.raises(tz.TensorzipError, match="its own base"):
        compress_file(source, tmp_path / "ckpt.tzip", base=tmp_path / "ckpt.tzip")
    assert (tmp_path / "ckpt.tzip").read_bytes() == before
