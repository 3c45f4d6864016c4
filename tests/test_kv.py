"""KV caches: bounds hold on every element, re-encoding is stable, odd shapes and
half-precision inputs work, and the attention error is what it says."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import tensorzip as tz
from tensorzip.errors import TensorzipError
from tensorzip.kv.attention import output_errors


def cache(layers=2, heads=3, tokens=40, dim=16, seed=0, dtype=np.float32):
    """Keys with a few strong channels (as real keys have), values without."""
    rng = np.random.default_rng(seed)
    keys = rng.standard_normal((layers, 1, heads, tokens, dim)) * np.where(np.arange(dim) % 7 == 0, 8.0, 1.0)
    values = rng.standard_normal((layers, 1, heads, tokens, dim))
    queries = rng.standard_normal((layers, 1, heads, tokens, dim))
    return keys.astype(dtype), values.astype(dtype), queries.astype(dtype)


@pytest.mark.parametrize("bound", [0.5, 0.05, 0.001])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_per_element_bound_holds_on_every_element(bound, dtype):
    keys, values, _ = cache(dtype=dtype)
    k, v = tz.kv.decompress(tz.kv.compress(keys, values, max_abs_error=bound))
    assert k.dtype == keys.dtype and v.shape == values.shape
    # On the decoded values in their dtype: rounding to float16 counts against the bound too.
    for decoded, original in ((k, keys), (v, values)):
        error = np.abs(decoded.astype(np.float32) - original.astype(np.float32))
        assert np.all(error <= bound), float(error.max())


def test_more_bits_less_error_and_more_bytes():
    keys, values, queries = cache(tokens=64, dim=32)
    previous_error, previous_size = np.inf, 0
    for bits in (2, 3, 4, 8):
        blob = tz.kv.compress(keys, values, bits=bits, queries=queries)
        info = tz.kv.describe(blob)
        assert info["attention"]["relative_error"] < previous_error
        assert info["stored_bytes"] > previous_size
        previous_error, previous_size = info["attention"]["relative_error"], info["stored_bytes"]


def test_reported_attention_error_is_recomputable():
    keys, values, queries = cache()
    blob = tz.kv.compress(keys, values, bits=3, queries=queries)
    k, v = tz.kv.decompress(blob)
    assert tz.kv.describe(blob)["attention"] == output_errors(queries, keys, values, k, v)


def test_reencoding_the_decoded_cache_reproduces_the_bytes():
    keys, values, _ = cache()
    # A grid: encode(decode(encode(x))) == encode(x), from the first round trip.
    for options in ({"step": 0.1}, {"step": 0.37, "value_step_ratio": 0.5, "window": 5}, {"max_abs_error": 0.05}):
        blob = tz.kv.compress(keys, values, **options)
        assert tz.kv.compress(*tz.kv.decompress(blob), **options) == blob, options
    # A budget: the grid it chose, asked for by its step, reproduces the file's cache.
    blob = tz.kv.compress(keys, values, bits=2)
    config = tz.kv.describe(blob)["config"]
    again = tz.kv.compress(*tz.kv.decompress(blob), step=config["step"], value_step_ratio=config["value_step_ratio"])
    assert [a.tobytes() for a in tz.kv.decompress(again)] == [a.tobytes() for a in tz.kv.decompress(blob)]
    # Min-max groups: a group's extremes move to grid points once, then the file is stable.
    options = {"levels": 6, "group_size": 16}
    k, v = tz.kv.decompress(tz.kv.compress(keys, values, **options))
    again = tz.kv.compress(k, v, **options)
    assert again == tz.kv.compress(*tz.kv.decompress(again), **options)


def test_window_is_exact_and_low_rank_reduces_error():
    keys, values, queries = cache(tokens=48)
    k, v = tz.kv.decompress(tz.kv.compress(keys, values, levels=4, window=8))
    assert k[:, :, :, -8:].tobytes() == keys[:, :, :, -8:].tobytes()
    assert v[:, :, :, -8:].tobytes() == values[:, :, :, -8:].tobytes()
    plain = tz.kv.describe(tz.kv.compress(keys, values, levels=4, queries=queries))
    corrected = tz.kv.describe(tz.kv.compress(keys, values, levels=4, rank=4, queries=queries))
    assert corrected["attention"]["relative_error"] < plain["attention"]["relative_error"]


def test_attention_error_target_is_met_with_the_smallest_tried():
    keys, values, queries = cache(tokens=64, dim=32)
    blob = tz.kv.compress(keys, values, max_rel_error=0.02, queries=queries)
    info = tz.kv.describe(blob)
    k, v = tz.kv.decompress(blob)
    assert output_errors(queries, keys, values, k, v)["relative_error"] <= 0.02
    assert len(blob) < len(tz.kv.compress(keys, values, bits=8))
    with pytest.raises(TensorzipError, match="queries"):
        tz.kv.compress(keys, values, max_rel_error=0.02)
    assert info["target_relative_error"] == 0.02


@pytest.mark.parametrize("shape", [(1, 1, 1, 1, 7), (2, 1, 2, 5, 33), (1, 2, 3, 0, 8), (1, 1, 2, 3, 1)])
def test_odd_shapes_one_token_and_empty_caches(shape):
    rng = np.random.default_rng(1)
    keys, values = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    for options in ({"step": 0.1}, {"levels": 16}, {"max_abs_error": 0.01}, {"levels": 4, "window": 2}):
        k, v = tz.kv.decompress(tz.kv.compress(keys, values, **options))
        assert k.shape == keys.shape and v.shape == values.shape
        if "max_abs_error" in options:
            assert np.all(np.abs(k - keys) <= 0.01) and np.all(np.abs(v - values) <= 0.01)


def test_bfloat16_and_per_layer_lists():
    keys, values, _ = cache(dtype=ml_dtypes.bfloat16)
    k, v = tz.kv.decompress(tz.kv.compress(list(keys), list(values), bits=8))
    assert k.dtype == ml_dtypes.bfloat16 and k.shape == keys.shape
    error = np.abs(k.astype(np.float32) - keys.astype(np.float32)).max()
    assert error < 0.01 * np.abs(keys.astype(np.float32)).max()  # 8 bits, plus bfloat16's own rounding


def test_bad_input_is_refused_clearly():
    keys, values, _ = cache()
    with pytest.raises(TensorzipError, match="layers, batch, heads, tokens"):
        tz.kv.compress(keys[0], values[0], bits=4)
    with pytest.raises(TensorzipError, match="must agree"):
        tz.kv.compress(keys, values[:, :, :, :5], bits=4)
    bad = keys.copy()
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(TensorzipError, match="NaN"):
        tz.kv.compress(bad, values, bits=4)
    with pytest.raises(TensorzipError, match="say how"):
        tz.kv.compress(keys, values)
    with pytest.raises(TensorzipError, match="not a KV cache"):
        tz.kv.decompress(tz.compress(np.zeros(3, np.float32)))


def test_inconsistent_files_raise_format_errors():
    import tensorzip.kv.codec as codec

    keys, values, _ = cache()
    tensors, record = codec.encode(keys, values, codec.KVConfig(levels=16))
    broken = dict(tensors, **{"keys.minimum": tensors["keys.minimum"][:, :, :, :1]})
    with pytest.raises(tz.FormatError, match="group parameters"):
        tz.kv.decompress(codec.to_bytes(broken, record))
    with pytest.raises(tz.FormatError, match="the record says"):
        tz.kv.decompress(codec.to_bytes(tensors, dict(record, shape=[1, 2, 3])))
    with pytest.raises(tz.TensorzipError):
        tz.kv.decompress(codec.to_bytes(tensors, dict(record, config=dict(record["config"], levels=1))))


def test_outlier_channels_are_exact_and_help_per_token_groups():
    keys, values, queries = cache(tokens=64, dim=32)
    values = values.copy()
    values[:, :, 1, :, 5] *= 40.0  # one strong value channel widens every token's group
    k, v = tz.kv.decompress(tz.kv.compress(keys, values, levels=8, outliers=2))
    assert v[:, :, 1, :, 5].tobytes() == values[:, :, 1, :, 5].tobytes()
    plain = tz.kv.describe(tz.kv.compress(keys, values, levels=8, queries=queries))
    apart = tz.kv.describe(tz.kv.compress(keys, values, levels=8, outliers=2, queries=queries))
    assert apart["attention"]["relative_error"] < plain["attention"]["relative_error"]
    bounded = tz.kv.decompress(tz.kv.compress(keys, values, max_abs_error=0.01, outliers=3))
    assert np.all(np.abs(bounded[1] - values) <= 0.01)


@pytest.mark.parametrize("bits", [1.5, 3, 6])
def test_a_bit_budget_counts_every_byte_and_uses_it(bits):
    keys, values, queries = cache(tokens=64, dim=32)
    elements = keys.size + values.size
    for options in ({}, {"queries": queries}, {"window": 4 if bits >= 3 else 1}):
        blob = tz.kv.compress(keys, values, bits=bits, **options)
        assert len(blob) * 8 <= bits * elements
        assert len(blob) * 8 > 0.9 * bits * elements  # the finest grid that fits, not a coarse one
        assert tz.kv.describe(blob)["budget_bits_per_element"] == bits


def test_budget_with_queries_chooses_the_ratio_and_records_its_error():
    from tensorzip.kv.search import RATIOS_TRIED

    keys, values, queries = cache(tokens=64, dim=32)
    blob = tz.kv.compress(keys, values, bits=3, queries=queries)
    info = tz.kv.describe(blob)
    assert info["config"]["value_step_ratio"] in RATIOS_TRIED
    assert info["attention"] == output_errors(queries, keys, values, *tz.kv.decompress(blob))


def test_an_impossible_budget_says_why():
    keys, values, queries = cache(tokens=3, dim=4)  # the header alone outweighs 2 bits per element
    with pytest.raises(tz.kv.TargetUnreachableError, match="cannot be met: the coarsest grid already takes"):
        tz.kv.compress(keys, values, bits=2)
    with pytest.raises(tz.kv.TargetUnreachableError, match="cannot be met"):
        tz.kv.compress(keys, values, bits=2, queries=queries)
    with pytest.raises(tz.kv.TargetUnreachableError, match="must be a positive finite number"):
        tz.kv.compress(keys, values, bits=0)
    keys, values, queries = cache(tokens=40, dim=16)
    with pytest.raises(tz.kv.TargetUnreachableError, match="no grid reaches"):
        tz.kv.compress(keys, values, max_rel_error=1e-9, queries=queries)
    empty = np.zeros((1, 1, 2, 0, 8), np.float32)
    assert tz.kv.decompress(tz.kv.compress(empty, empty, bits=2))[0].shape == empty.shape


def test_grid_is_finer_where_asked_and_symbols_stay_small():
    keys, values, _ = cache(tokens=64, dim=32)
    blob = tz.kv.compress(keys, values, step=0.2, value_step_ratio=0.5)
    k, v = tz.kv.decompress(blob)
    assert np.abs(k - keys).max() <= 0.1 * (1 + 1e-6) and np.abs(v - values).max() <= 0.05 * (1 + 1e-6)
    with pytest.raises(TensorzipError, match="16 bits"):
        tz.kv.compress(keys, values, step=1e-6)
    with pytest.raises(TensorzipError, match="exactly one"):
        tz.kv.compress(keys, values, step=0.1, bits=3)


def test_save_file_and_load_file(tmp_path):
    """A path takes save_file / load_file, as in the rest of the package; describe reads a
    path or bytes without decoding the cache."""
    keys, values, queries = cache(tokens=32)
    path = tmp_path / "cache.tzip"
    info = tz.kv.save_file(keys, values, path, bits=4, queries=queries, threads=1)
    blob = path.read_bytes()
    assert blob == tz.kv.compress(keys, values, bits=4, queries=queries)
    assert info == tz.kv.describe(blob) == tz.kv.describe(path) and info["stored_bytes"] == len(blob)
    k, v = tz.kv.load_file(path, threads=2)
    assert [a.tobytes() for a in (k, v)] == [a.tobytes() for a in tz.kv.decompress(blob)]
    with pytest.raises(tz.OutputFileError, match="exists"):
        tz.kv.save_file(keys, values, path, step=0.1, overwrite=False)
    with pytest.raises(tz.kv.TargetUnreachableError):  # nothing written over the old file
        tz.kv.save_file(keys, values, path, bits=0.01)
    assert path.read_bytes() == blob
    with pytest.raises(tz.InputFileError):
        tz.kv.load_file(tmp_path / "missing.tzip")
