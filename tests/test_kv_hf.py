"""Hugging Face caches through tensorzip.kv (skipped where transformers is not installed):
a tiny model built from a config, no downloads."""

from __future__ import annotations

import numpy as np
import pytest

import tensorzip as tz

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def layers_of(cache):
    return tz.kv.hf_cache.cache_layers(cache)


def test_dynamic_cache_round_trip_and_generation(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=97, n_positions=64)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 97, (1, 24))
    with torch.no_grad():
        out = model(ids, use_cache=True)
    info = tz.kv.save_cache(out.past_key_values, tmp_path / "cache.tzip", max_abs_error=1e-3)
    assert info["bytes_per_element"] < 4
    restored = tz.kv.load_cache(tmp_path / "cache.tzip")
    (keys, values), (keys_back, values_back) = layers_of(out.past_key_values), layers_of(restored)
    for a, b in zip(keys + values, keys_back + values_back, strict=True):
        assert a.shape == b.shape and np.all(np.abs(a - b) <= 1e-3)
    step = torch.randint(0, 97, (1, 1))
    with torch.no_grad():
        exact = model(step, past_key_values=out.past_key_values, use_cache=True).logits
        approx = model(step, past_key_values=restored, use_cache=True).logits
    assert torch.allclose(exact, approx, atol=1e-2)


def test_not_a_cache_and_missing_file(tmp_path):
    with pytest.raises(tz.TensorzipError, match="not a KV cache"):
        tz.kv.save_cache(object(), tmp_path / "x.tzip", bits=4)
    with pytest.raises(tz.InputFileError):
        tz.kv.load_cache(tmp_path / "missing.tzip")
