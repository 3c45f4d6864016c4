"""Compression on a Dask cluster (``tensorzip.writing.cluster``): the file is byte for byte the one a
local run writes, for single files, folders of shards, fine-tunes against a base and the
real MiniLM checkpoint; failures name the tensor and leave nothing behind.

One LocalCluster of two worker processes (one thread each, on loopback) serves the module
and is closed at its end. Without ``distributed`` installed only the "clear error" tests run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

from tensorzip.cli.main import main
from tensorzip.codecs import EncodedTensor
from tensorzip.container import TzipReader, TzipWriter
from tensorzip.errors import CorruptDataError, InputFileError, TensorzipError
from tensorzip.files import compress_file, compress_files_on_cluster, decompress_file, verify_file
from tensorzip.writing import cluster

from .test_cli import _cached_minilm
from .test_delta import fine_tuned
from .test_folder import sharded  # noqa: F401  (a fixture)

HAVE_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
needs_distributed = pytest.mark.skipif(not HAVE_DISTRIBUTED, reason="dask.distributed is not installed")

PIECE_BYTES = 1 << 20  # small pieces, so a 6 MiB tensor is split in six


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  host="127.0.0.1") as local, distributed.Client(local) as connected:
        yield connected


@pytest.fixture
def small_pieces(monkeypatch):
    """Small pieces, and a record of how the driver split each tensor."""
    monkeypatch.setattr(cluster, "PIECE_BYTES", PIECE_BYTES)
    split: dict[str, int] = {}
    pieces_of = cluster.pieces_of

    def recording(name, *args, **kwargs):
        pieces = pieces_of(name, *args, **kwargs)
        split[name] = len(pieces)
        return pieces

    monkeypatch.setattr(cluster, "pieces_of", recording)
    return split


def checkpoint_tensors(seed: int = 0) -> dict[str, np.ndarray]:
    """Shaped like a real checkpoint: a large FP32 embedding tied to the output head, BF16 and
    FP32 layers, FP32 holding FP16 values, a pruned (sparse) matrix, a step counter, an empty one."""
    rng = np.random.default_rng(seed)
    embedding = (rng.standard_normal((1024, 1536)) * 0.05).astype(np.float32)  # 6 MiB: split
    pruned = (rng.standard_normal((300, 1000)) * 0.05).astype(np.float32)
    pruned[rng.random(pruned.shape) < 0.7] = 0
    return {
        "embed.weight": embedding,
        "layer.0.attn.weight": (rng.standard_normal((768, 768)) * 0.02).astype(ml_dtypes.bfloat16),
        "layer.0.attn.bias": (rng.standard_normal(768) * 0.02).astype(np.float32),
        "layer.0.mlp.weight": (rng.standard_normal((1024, 1200)) * 0.02).astype(ml_dtypes.bfloat16),  # 2.3 MiB
        # Over 64 KiB, so coded alone (narrowed); the small bias and step are coded in groups.
        "layer.0.norm.weight": (1 + rng.standard_normal(20480) * 0.01).astype(np.float16).astype(np.float32),
        "layer.1.pruned.weight": pruned,
        "lm_head.weight": embedding.copy(),
        "step": np.array([12345], np.int64),
        "empty": np.zeros((0, 16), np.float32),
    }


def write_checkpoint(path, tensors) -> None:
    save_safetensors(tensors, str(path), metadata={"format": "pt"})


def assert_same_run(local, remote) -> None:
    """Two reports of the same compression: equal per-tensor figures, in the same order."""
    assert remote.tensors == local.tensors
    assert remote.compressed_bytes == local.compressed_bytes
    assert remote.dedup_saved_bytes == local.dedup_saved_bytes


# -- byte identity -------------------------------------------------------------------------


@needs_distributed
def test_file_on_the_cluster_is_byte_identical(tmp_path, client, small_pieces):
    source = tmp_path / "model.safetensors"
    tensors = checkpoint_tensors()
    write_checkpoint(source, tensors)
    local = compress_file(source, tmp_path / "local.tzip", threads=2)
    remote = compress_file(source, tmp_path / "remote.tzip", scheduler=client)
    assert (tmp_path / "remote.tzip").read_bytes() == (tmp_path / "local.tzip").read_bytes()
    assert_same_run(local, remote)
    assert remote.threads == 2  # the cluster's worker threads
    # The checkpoint exercised what it is meant to: a split tensor, a shared one, every codec.
    assert small_pieces["embed.weight"] == 6 and small_pieces["layer.0.mlp.weight"] == 3
    assert "lm_head.weight" not in small_pieces  # stored once, as the embedding
    codecs = {t.name: t.codec_id for t in remote.tensors}
    assert codecs["lm_head.weight"] == "same_as:embed.weight"
    assert codecs["layer.0.norm.weight"] == "tensorzip.narrowed_float"
    assert codecs["layer.1.pruned.weight"] == "tensorzip.sparse"
    assert codecs["layer.0.attn.bias"].startswith("packed:") and codecs["step"].startswith("packed:")
    decompress_file(tmp_path / "remote.tzip", tmp_path / "back.safetensors")
    assert (tmp_path / "back.safetensors").read_bytes() == source.read_bytes()


@needs_distributed
def test_folder_of_shards_on_the_cluster_is_byte_identical(tmp_path, client, small_pieces, sharded):  # noqa: F811
    folder, _ = sharded
    # A third shard with a large (split) tensor, BF16 and a repeat; names are unique across shards.
    shard = "model-00003-of-00003.safetensors"
    tensors = {f"extra.{name}": array for name, array in checkpoint_tensors(1).items()}
    write_checkpoint(folder / shard, tensors)
    index = folder / "model.safetensors.index.json"
    doc = json.loads(index.read_text())
    doc["weight_map"].update(dict.fromkeys(tensors, shard))
    index.write_text(json.dumps(doc, indent=2))
    local = compress_file(folder, tmp_path / "local.tzip", threads=2)
    remote = compress_file(folder, tmp_path / "remote.tzip", scheduler=client)
    assert (tmp_path / "remote.tzip").read_bytes() == (tmp_path / "local.tzip").read_bytes()
    assert_same_run(local, remote)
    assert small_pieces["extra.embed.weight"] == 6
    verify_file(tmp_path / "remote.tzip", against=folder)


@needs_distributed
@pytest.mark.parametrize("base_kind", ["safetensors", "tzip"])
def test_fine_tune_against_a_base_on_the_cluster_is_byte_identical(tmp_path, client, small_pieces, base_kind):
    rng = np.random.default_rng(5)
    base_tensors = checkpoint_tensors(2)
    tuned = {name: fine_tuned(rng, array) for name, array in base_tensors.items()}
    tuned["lm_head.weight"] = tuned["embed.weight"].copy()  # still tied
    base = tmp_path / "base.safetensors"
    write_checkpoint(base, base_tensors)
    if base_kind == "tzip":
        compress_file(base, tmp_path / "base.tzip")
        base = tmp_path / "base.tzip"
    source = tmp_path / "tuned.safetensors"
    write_checkpoint(source, tuned)
    local = compress_file(source, tmp_path / "local.tzip", threads=2, base=base)
    remote = compress_file(source, tmp_path / "remote.tzip", scheduler=client, base=base)
    assert (tmp_path / "remote.tzip").read_bytes() == (tmp_path / "local.tzip").read_bytes()
    assert_same_run(local, remote)
    assert any("+sub" in t.codec_id or "+xor" in t.codec_id for t in remote.tensors)
    # A safetensors base is read by offset, so its tensors split like any other; a .tzip base is decoded whole.
    assert small_pieces["embed.weight"] == (6 if base_kind == "safetensors" else 1)
    verify_file(tmp_path / "remote.tzip", against=source, base=base)


@needs_distributed
@pytest.mark.skipif(_cached_minilm() is None, reason="all-MiniLM-L6-v2 is not cached locally (no downloads in tests)")
def test_real_minilm_on_the_cluster_is_byte_identical(tmp_path, client):
    from tensorzip import sample_data

    fp32 = _cached_minilm()
    bf16 = sample_data.derive_dtype_copy(fp32, tmp_path / "model-bf16.safetensors", "bfloat16")
    for source in (fp32, bf16):
        local = compress_file(source, tmp_path / "local.tzip", threads=2)
        remote = compress_file(source, tmp_path / "remote.tzip", scheduler=client)
        assert (tmp_path / "remote.tzip").read_bytes() == (tmp_path / "local.tzip").read_bytes(), source
        assert_same_run(local, remote)


@needs_distributed
def test_cli_scheduler_address(tmp_path, client, capsys):
    source = tmp_path / "model.safetensors"
    write_checkpoint(source, checkpoint_tensors(3))
    compress_file(source, tmp_path / "local.tzip")
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    code = main(["compress", str(source), "-o", str(tmp_path / "remote.tzip"), "--scheduler", address, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["threads"] == 2
    assert (tmp_path / "remote.tzip").read_bytes() == (tmp_path / "local.tzip").read_bytes()


@needs_distributed
def test_cli_model_folder_with_scheduler_is_byte_identical(tmp_path, client, capsys, small_pieces, sharded):  # noqa: F811
    """`tensorzip compress DIR --scheduler ADDRESS`: the per-shard folder, every file the
    same bytes as the local run's."""
    folder, _ = sharded
    (folder / "config.json").write_text('{"model_type": "bert"}')
    assert main(["compress", str(folder), "-o", str(tmp_path / "local.tzip"), "--json"]) == 0
    code = main(["compress", str(folder), "-o", str(tmp_path / "remote.tzip"), "--scheduler",
                 client.scheduler.address, "--json"])
    _, err = capsys.readouterr()
    assert code == 0, err
    local = sorted(p.relative_to(tmp_path / "local.tzip") for p in (tmp_path / "local.tzip").rglob("*"))
    remote = sorted(p.relative_to(tmp_path / "remote.tzip") for p in (tmp_path / "remote.tzip").rglob("*"))
    assert local == remote and any(p.suffix == ".tzip" for p in local)
    for relative in local:
        mine, theirs = tmp_path / "local.tzip" / relative, tmp_path / "remote.tzip" / relative
        if mine.is_file():
            assert theirs.read_bytes() == mine.read_bytes(), relative


@needs_distributed
def test_whole_files_farmed_out(tmp_path, client):
    pairs = []
    for number in range(3):
        source = tmp_path / f"model-{number}.safetensors"
        write_checkpoint(source, checkpoint_tensors(10 + number))
        pairs.append((source, tmp_path / f"model-{number}.tzip"))
    reports = compress_files_on_cluster(pairs, client)
    assert [r.target for r in reports] == [str(target) for _, target in pairs]
    for source, target in pairs:
        compress_file(source, tmp_path / "local.tzip")
        assert target.read_bytes() == (tmp_path / "local.tzip").read_bytes()


# -- failures ------------------------------------------------------------------------------


def no_leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial") or p.suffix == ".tzip")


@needs_distributed
def test_a_failing_task_names_the_tensor_and_leaves_no_output(tmp_path, client, monkeypatch):
    """The source changes once the first tensor is written: tasks submitted after that find
    another file than the driver read, fail on the worker, and the run stops cleanly."""
    monkeypatch.setattr(cluster, "PIECE_BYTES", PIECE_BYTES)
    rng = np.random.default_rng(7)
    source = tmp_path / "model.safetensors"
    write_checkpoint(source, {f"t{k}": rng.standard_normal(PIECE_BYTES // 4).astype(np.float32) for k in range(8)})
    touched = []

    def progress(done: int, total: int) -> None:
        if not touched:
            stamp = source.stat().st_mtime_ns
            os.utime(source, ns=(stamp + 10**9, stamp + 10**9))
            touched.append(True)

    with pytest.raises(InputFileError) as caught:
        compress_file(source, tmp_path / "out.tzip", scheduler=client, progress=progress)
    message = str(caught.value)
    assert re.search(r"tensor 't[1-7]'", message) and "not the file the driver read" in message
    assert no_leftovers(tmp_path) == []
    # The cluster is still usable afterwards.
    compress_file(source, tmp_path / "again.tzip", scheduler=client)


def test_worker_that_cannot_see_the_file_says_so(tmp_path):
    """Runs the worker function here: a path the worker cannot read names the tensor and the
    shared-filesystem assumption."""
    ref = cluster.FileRef(str(tmp_path / "elsewhere.safetensors"), 100, 0)
    piece = cluster.Piece("layer.3.weight", ref, 8, "float32", (4,), {"id": "tensorzip.byte_planes"})
    with pytest.raises(InputFileError, match=r"tensor 'layer.3.weight'.*driver's path.*shared filesystem"):
        cluster.encode_pieces([piece])


def test_without_distributed_the_error_is_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    source = tmp_path / "model.safetensors"
    write_checkpoint(source, {"w": np.ones(10, np.float32)})
    with pytest.raises(TensorzipError, match=re.escape("pip install 'tensorzip[dask]'")):
        compress_file(source, tmp_path / "out.tzip", scheduler="tcp://127.0.0.1:8786")
    code = main(["compress", str(source), "-o", str(tmp_path / "out.tzip"), "--scheduler", "tcp://127.0.0.1:8786"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "dask.distributed" in err
    assert no_leftovers(tmp_path) == []


@needs_distributed
def test_unreachable_scheduler_is_an_error(tmp_path, monkeypatch):
    import socket

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = tmp_path / "model.safetensors"
    write_checkpoint(source, {"w": np.ones(10, np.float32)})
    with pytest.raises(TensorzipError, match="cannot connect to the Dask scheduler"):
        compress_file(source, tmp_path / "out.tzip", scheduler=f"tcp://127.0.0.1:{port}")
    assert no_leftovers(tmp_path) == []


# -- the writer's side ---------------------------------------------------------------------


def test_add_encoded_writes_what_flush_would(tmp_path):
    from tensorzip.codecs import BytePlanesCodec, EncodeJob
    from tensorzip.dtypes import by_name

    rng = np.random.default_rng(9)
    arrays = {"a": rng.standard_normal(300000).astype(np.float32), "b": rng.standard_normal(7).astype(np.float32)}
    with TzipWriter(tmp_path / "plain.tzip") as writer:
        for name, array in arrays.items():
            writer.add(name, array, BytePlanesCodec.for_dtype(by_name("float32")))
        writer.add_shared("c", "a")
    spec = by_name("float32")
    with TzipWriter(tmp_path / "encoded.tzip") as writer:
        writer.add("a", arrays["a"], BytePlanesCodec.for_dtype(spec))  # queued, then written before "b"
        codec = BytePlanesCodec.for_dtype(spec)
        (encoded,) = BytePlanesCodec.encode_batch([EncodeJob(codec, arrays["b"], spec)], 1)
        writer.add_encoded("b", spec, (7,), codec, EncodedTensor([bytes(c) for c in encoded.chunks],
                                                                   encoded.chunk_crc32c, encoded.plane_histograms,
                                                                   encoded.order0_bound_bytes))
        writer.add_shared("c", "a")
    assert (tmp_path / "encoded.tzip").read_bytes() == (tmp_path / "plain.tzip").read_bytes()
    with TzipReader(tmp_path / "encoded.tzip") as reader:
        assert reader.get_tensor("b").tobytes() == arrays["b"].tobytes()


def test_add_encoded_refuses_a_damaged_chunk(tmp_path):
    from tensorzip.codecs import BytePlanesCodec, EncodeJob
    from tensorzip.dtypes import by_name

    spec = by_name("float32")
    codec = BytePlanesCodec.for_dtype(spec)
    (encoded,) = BytePlanesCodec.encode_batch([EncodeJob(codec, np.arange(1000, dtype=np.float32), spec)], 1)
    damaged = bytearray(encoded.chunks[0])
    damaged[-1] ^= 1
    with pytest.raises(CorruptDataError, match="'w': encoded chunk 0 fails its checksum"), \
            TzipWriter(tmp_path / "out.tzip") as writer:
        writer.add_encoded("w", spec, (1000,), codec, EncodedTensor([damaged], encoded.chunk_crc32c,
                                                                     encoded.plane_histograms, 0.0))
    assert no_leftovers(tmp_path) == []
