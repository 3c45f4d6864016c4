"""Base pins remembered per version of the base file: a second decode against the same base
hashes nothing, and a base written since (same size, its modification time put back) is
hashed again and refused when it differs; a damaged cache is no cache."""

from __future__ import annotations

import os

import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.container import bases, pin_cache
from tensorzip.errors import BaseMismatchError


@pytest.fixture
def family(tmp_path):
    rng = np.random.default_rng(8)
    base = {f"w{i}": rng.standard_normal((256, 128)).astype(np.float32) for i in range(4)}
    tuned = {k: v + rng.standard_normal(v.shape).astype(np.float32) * 1e-3 for k, v in base.items()}
    save_safetensors(base, str(tmp_path / "base.safetensors"))
    save_safetensors(tuned, str(tmp_path / "tuned.safetensors"))
    return tmp_path


def _counting_digests(monkeypatch):
    calls = []
    original = bases.digest

    def counted(array, *scheme):
        calls.append(array.nbytes)
        return original(array, *scheme)

    monkeypatch.setattr(bases, "digest", counted)
    return calls


def test_a_second_decode_against_the_same_base_hashes_nothing(family, monkeypatch):
    tz.compress_file(family / "tuned.safetensors", family / "tuned.tzip", base=family / "base.safetensors")
    calls = _counting_digests(monkeypatch)
    tz.decompress_file(family / "tuned.tzip", family / "a.safetensors", base=family / "base.safetensors")
    first = len(calls)
    tz.decompress_file(family / "tuned.tzip", family / "b.safetensors", base=family / "base.safetensors")
    assert (family / "a.safetensors").read_bytes() == (family / "b.safetensors").read_bytes() == \
        (family / "tuned.safetensors").read_bytes()
    assert len(calls) == first  # compress remembered them already: nothing hashed either time
    monkeypatch.setenv(pin_cache.PIN_CACHE_ENV, "0")
    tz.decompress_file(family / "tuned.tzip", family / "c.safetensors", base=family / "base.safetensors")
    assert len(calls) == first + 4  # off: every base tensor hashed
    monkeypatch.delenv(pin_cache.PIN_CACHE_ENV)
    tz.verify_file(family / "tuned.tzip", base=family / "base.safetensors")
    assert len(calls) == first + 8  # verify hashes every base tensor, whatever is remembered


def test_a_base_written_since_is_hashed_again_and_refused(family):
    tz.compress_file(family / "tuned.safetensors", family / "tuned.tzip", base=family / "base.safetensors")
    tz.decompress_file(family / "tuned.tzip", family / "a.safetensors", base=family / "base.safetensors")
    base = family / "base.safetensors"
    before = os.stat(base)
    data = bytearray(base.read_bytes())
    data[-10] ^= 0x40  # a bit of the last tensor, same size
    base.write_bytes(bytes(data))
    os.utime(base, ns=(before.st_atime_ns, before.st_mtime_ns))  # its modification time put back
    with pytest.raises(BaseMismatchError, match="differs from the one it was made with"):
        tz.decompress_file(family / "tuned.tzip", family / "b.safetensors", base=base)
    assert not (family / "b.safetensors").exists()


def test_a_damaged_or_foreign_cache_is_no_cache(family, monkeypatch):
    tz.compress_file(family / "tuned.safetensors", family / "tuned.tzip", base=family / "base.safetensors")
    cache = pin_cache.PinCache(family / "base.safetensors")
    assert cache.path.is_file()
    for damage in (b"{not json", b'{"file": "/elsewhere", "version": [], "pins": {}}', b"[1, 2]"):
        cache.path.write_bytes(damage)
        calls = _counting_digests(monkeypatch)
        tz.decompress_file(family / "tuned.tzip", family / "x.safetensors", base=family / "base.safetensors")
        assert len(calls) == 4 and (family / "x.safetensors").read_bytes() == \
            (family / "tuned.safetensors").read_bytes()
        monkeypatch.undo()
    wrong = pin_cache.PinCache(family / "base.safetensors")  # remembered pins that do not match: the bytes decide
    with wrong._lock:
        wrong._pins = {key: "sha256:" + "0" * 32 for key in wrong._pins}
        wrong._changed = True
    wrong.save()
    tz.decompress_file(family / "tuned.tzip", family / "y.safetensors", base=family / "base.safetensors")
    assert (family / "y.safetensors").read_bytes() == (family / "tuned.safetensors").read_bytes()


def test_only_the_most_recent_bases_are_kept(tmp_path, monkeypatch):
    """The pins folder does not grow without end: past MAX_CACHED_BASES files, the least
    recently written go."""
    monkeypatch.setattr(pin_cache, "MAX_CACHED_BASES", 3)
    folder = tmp_path / "cache"
    written = []
    for number in range(5):
        base = tmp_path / f"base{number}.bin"
        base.write_bytes(b"x" * 8)
        cache = pin_cache.PinCache(base, folder)
        cache.remember(0, 8, "blake3-128:" + "0" * 32, "blake3-128:")
        cache.save()
        os.utime(cache.path, ns=(number * 10**9, number * 10**9))  # a clear order, whatever the clock
        written.append(cache.path)
    kept = sorted(p.name for p in (folder / "pins").iterdir())
    assert len(kept) == 3 and written[-1].name in kept and written[0].name not in kept


def test_a_base_replaced_after_it_was_mapped_is_checked_by_its_own_bytes(tmp_path):
    """Pins are keyed on the file as mapped: a different file renamed onto the base's path
    after it was opened (whose pins are remembered) cannot confirm the bytes still mapped."""
    rng = np.random.default_rng(3)
    first = {"w": rng.standard_normal(5000).astype(np.float32)}
    second = {"w": first["w"] + np.float32(1e-3)}
    path, other = tmp_path / "base.safetensors", tmp_path / "other.safetensors"
    save_safetensors(first, str(path))
    save_safetensors(second, str(other))
    with bases.BaseCheckpoint(other, open_tzip=None) as remembered:  # the other file's pin, remembered
        other_pin = remembered.pin("w", remembered.tensor("w"))
    with bases.BaseCheckpoint(path, open_tzip=None) as opened:  # maps the first file
        os.replace(other, path)  # the path now names the other file, whose pin is remembered
        with bases.BaseCheckpoint(path, open_tzip=None) as again:
            assert again.pin("w", again.tensor("w")) == other_pin  # remembered under its own version
        assert opened.pin("w", opened.tensor("w"), other_pin) != other_pin  # the mapped bytes' own hash
