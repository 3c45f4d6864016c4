"""Many threads reading one open file at once get exact results.

A ``TzipReader`` (and ``safe_open``) is opened once and shared by 12 Python threads,
each decoding random tensors many times (``get_tensor``, ``decode_into``,
``iter_tensors``), with native threads of their own at the same time; every result is
compared byte for byte with the original. Embedding search and KV decoding are shared
the same way. The threads start together (a barrier) so that calls overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import tensorzip as tz
from tensorzip.codecs import BytePlanesCodec, NarrowedFloatCodec, SparseCodec
from tensorzip.container import TzipReader, TzipWriter

THREADS = 12
ROUNDS = 30


def run_together(count: int, work: Callable[[int], None]) -> None:
    """Run ``work(i)`` on ``count`` threads started together; re-raise the first failure."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            work(index)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,), name=f"reader-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive(), f"{thread.name} did not finish (a deadlock?)"
    if errors:
        raise errors[0]


def same_bits(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, what
    assert got.tobytes() == want.tobytes(), f"{what}: bytes differ"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """A file of every codec and form (multi-chunk byte planes, sparse, narrowed, same_as,
    deltas against a base beside it), and its tensors."""
    folder = tmp_path_factory.mktemp("concurrency")
    rng = np.random.default_rng(99)
    base_tensors = {f"layer{i}.w": (rng.standard_normal((64, 96)) * 0.05).astype(np.float32) for i in range(4)}
    base = folder / "base.tzip"
    tz.save_file(base_tensors, base)
    tensors: dict[str, np.ndarray] = {}
    for name, value in base_tensors.items():  # fine-tuned: coded against the base (xor or sub)
        tensors[name] = (value + rng.standard_normal(value.shape).astype(np.float32) * 1e-4).astype(np.float32)
    tensors["embed.bf16"] = (rng.standard_normal((300, 64)) * 0.02).astype(ml_dtypes.bfloat16)
    tensors["head.fp16"] = (rng.standard_normal((128, 40)) * 0.1).astype(np.float16)
    tensors["mask.bool"] = rng.random(5000) < 0.3
    tensors["ids.int64"] = rng.integers(-1000, 1000, 3000)
    tensors["q.int8"] = rng.integers(-128, 128, 7000).astype(np.int8)
    sparse = np.zeros(20000, np.float32)
    sparse[rng.choice(20000, 900, replace=False)] = rng.standard_normal(900).astype(np.float32)
    tensors["pruned.sparse"] = sparse
    tensors["narrow.fp32"] = (rng.standard_normal(6000) * 0.1).astype(np.float16).astype(np.float32)
    tensors["scalar"] = np.array(3.5, np.float64)
    tensors["empty"] = np.zeros((0, 7), np.float32)
    tensors["tied.bf16"] = tensors["embed.bf16"].copy()
    path = folder / "model.tzip"
    tz.save_file(tensors, path, base=base)
    # One more file with small chunks: many chunks per tensor for the native pool to share out.
    codecs = {"pruned.sparse": SparseCodec(rotate_bits=1, chunk_elements=1500),
              "narrow.fp32": NarrowedFloatCodec("float16", 1, 700)}
    chunked = folder / "chunked.tzip"
    with TzipWriter(chunked) as writer:
        for name, value in tensors.items():
            if name.startswith("layer") or name == "tied.bf16":
                continue
            spec = tz.dtypes.by_numpy(value.dtype)
            writer.add(name, value, codecs.get(name, BytePlanesCodec(spec.rotate_bits, chunk_elements=1000)))
    with TzipReader(path) as reader:  # the file uses what it should
        kinds = {e.codec_config.get("id") for e in reader.header.tensors.values()}
        assert {"tensorzip.sparse", "tensorzip.narrowed_float", "tensorzip.byte_planes"} <= kinds
        assert any(e.delta is not None for e in reader.header.tensors.values())
        assert reader.header.tensors["tied.bf16"].same_as == "embed.bf16"
    return path, chunked, tensors


def exercise(reader: TzipReader, tensors: dict[str, np.ndarray], seed: int, rounds: int = ROUNDS) -> None:
    """Random reads of every kind, each checked."""
    rng = np.random.default_rng(seed)
    names = reader.keys()
    for round_number in range(rounds):
        kind = round_number % 3
        if kind == 0:
            name = names[rng.integers(len(names))]
            same_bits(reader.get_tensor(name), tensors[name], f"get_tensor({name!r})")
        elif kind == 1:
            chosen = [names[i] for i in rng.choice(len(names), size=4, replace=False)]
            items = [(reader.entry(n), np.empty(tensors[n].shape, tensors[n].dtype)) for n in chosen]
            reader.decode_into(items)
            for name, (_, out) in zip(chosen, items, strict=True):
                same_bits(out, tensors[name], f"decode_into({name!r})")
        else:
            chosen = [names[i] for i in rng.choice(len(names), size=5, replace=False)]
            for name, array in reader.iter_tensors(chosen, batch_bytes=int(rng.integers(1, 40_000))):
                same_bits(array, tensors[name], f"iter_tensors({name!r})")


@pytest.mark.parametrize("native_threads", [1, 4])
@pytest.mark.parametrize("source", ["path", "bytes"])
def test_one_reader_many_threads(checkpoint, native_threads: int, source: str) -> None:
    path, _, tensors = checkpoint
    base = path.parent / "base.tzip"
    opened = path if source == "path" else path.read_bytes()
    # From bytes the base is not beside the file: it is given (opened once, on first use).
    with TzipReader(opened, threads=native_threads, base=None if source == "path" else base) as reader:
        run_together(THREADS, lambda i: exercise(reader, tensors, seed=1000 * native_threads + i))


def test_small_chunks_shared_out_by_native_threads(checkpoint) -> None:
    _, chunked, tensors = checkpoint
    with TzipReader(chunked, threads=3) as reader:
        assert max(len(e.chunks) for e in reader.header.tensors.values()) >= 10
        run_together(THREADS, lambda i: exercise(reader, tensors, seed=7 + i))


def test_the_base_is_opened_once_under_contention(checkpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every thread's first read needs the base, found beside the file: it is opened once."""
    from tensorzip.container import bases as base_checkpoint

    path, _, tensors = checkpoint
    opened = []
    original = base_checkpoint.BaseCheckpoint.__init__

    def counting(self: Any, *args: Any, **kwargs: Any) -> None:
        opened.append(args[0])
        original(self, *args, **kwargs)

    monkeypatch.setattr(base_checkpoint.BaseCheckpoint, "__init__", counting)
    deltas = [name for name in tensors if name.startswith("layer")]
    for _ in range(3):
        opened.clear()
        with TzipReader(path) as reader:
            run_together(THREADS, lambda i, r=reader: same_bits(r.get_tensor(deltas[i % len(deltas)]),
                                                               tensors[deltas[i % len(deltas)]], "delta"))
        assert len(opened) == 1, opened


def test_safe_open_shared_by_threads(checkpoint) -> None:
    path, _, tensors = checkpoint
    with tz.safe_open(path, threads=2) as f:
        names = f.keys()

        def work(index: int) -> None:
            rng = np.random.default_rng(index)
            for _ in range(ROUNDS):
                name = names[rng.integers(len(names))]
                same_bits(f.get_tensor(name), tensors[name], name)

        run_together(THREADS, work)


def test_torch_tensors_from_threads(checkpoint) -> None:
    torch = pytest.importorskip("torch")
    path, _, tensors = checkpoint
    with tz.safe_open(path, framework="pt") as f:
        def work(index: int) -> None:
            for name in ("embed.bf16", "head.fp16", "layer2.w", "mask.bool"):
                got = f.get_tensor(name)
                assert isinstance(got, torch.Tensor)
                want = tensors[name]
                width = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[want.itemsize]
                raw = got.numpy() if got.dtype == torch.bool else got.view(width).numpy()
                assert raw.tobytes() == want.tobytes(), name

        run_together(8, work)


def test_embedding_search_from_threads() -> None:
    rng = np.random.default_rng(5)
    vectors = (rng.standard_normal((1500, 16)) * np.linspace(1, 0.1, 16)).astype(np.float32)
    queries = rng.standard_normal((24, 16)).astype(np.float32)
    for blob in (tz.embeddings.compress(vectors, mode="transform", level=0.001),
                 tz.embeddings.compress(vectors, mode="lossless")):
        collection = tz.embeddings.open(blob)
        expected = [collection.search(queries[i::4], k=7) for i in range(4)]
        expected_rescored = collection.search(queries, k=5, rescore=20, originals=vectors)
        decoded = collection.decode().copy()

        def work(index: int, collection: Any = collection, expected: Any = expected,
                 expected_rescored: Any = expected_rescored, decoded: np.ndarray = decoded) -> None:
            for round_number in range(4):
                part = (index + round_number) % 4
                scores, rows = collection.search(queries[part::4], k=7)
                assert np.array_equal(rows, expected[part][1]) and scores.tobytes() == expected[part][0].tobytes()
                scores, rows = collection.search(queries, k=5, rescore=20, originals=vectors)
                assert np.array_equal(rows, expected_rescored[1])
                assert collection.decode().tobytes() == decoded.tobytes()

        run_together(8, work)


def test_kv_and_single_array_decoding_from_threads() -> None:
    rng = np.random.default_rng(8)
    keys = rng.standard_normal((2, 1, 4, 40, 16)).astype(np.float32)
    values = rng.standard_normal((2, 1, 4, 40, 16)).astype(np.float32)
    kv_blob = tz.kv.compress(keys, values, step=0.05, window=4)
    kv_expected = tz.kv.decompress(kv_blob)
    array = (rng.standard_normal(50_000) * 0.02).astype(ml_dtypes.bfloat16)
    blob = tz.compress(array)

    def work(index: int) -> None:
        for _ in range(8):
            k, v = tz.kv.decompress(kv_blob, threads=1 + index % 3)
            assert k.tobytes() == kv_expected[0].tobytes() and v.tobytes() == kv_expected[1].tobytes()
            same_bits(tz.decompress(blob, threads=1 + index % 2), array, "decompress")

    run_together(8, work)
