"""Every face x every kind (issue 15): decompress, load_file, safe_open, info, verify and
analyze, given each kind of path tensorzip reads or writes, either give the documented
result (checked against the data, not just the exit code) or raise/print a TensorzipError
that names the command or API that does read it. Never internals, never exit 0 with the
wrong content."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file as load_safetensors
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.cli import main
from tensorzip.container.kinds import Kind, identify

KINDS = ["safetensors", "pytorch", "numpy", "model_folder", "checkpoint", "checkpoint_base", "folder_archive",
         "compressed_folder", "lossy_weights", "embeddings", "kv_cache", "unknown"]


@dataclass
class Made:
    path: Path
    kind: Kind
    original: Path | None = None  # what it decodes to, for compressed kinds


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Made]:
    root = tmp_path_factory.mktemp("kinds")
    rng = np.random.default_rng(15)
    weights = {"embed.weight": (rng.standard_normal((96, 32)) * 0.05).astype(np.float32),
               "layer.weight": (rng.standard_normal((32, 32)) * 0.1).astype(np.float32),
               "layer.bias": np.zeros(32, np.float32), "step": np.array([7], np.int64)}
    save_safetensors(weights, str(root / "model.safetensors"), metadata={"format": "pt"})
    tuned = {k: (v * np.float32(1.001)).astype(v.dtype) if v.dtype == np.float32 else v for k, v in weights.items()}
    save_safetensors(tuned, str(root / "tuned.safetensors"), metadata={"format": "pt"})
    np.save(root / "vectors.npy", rng.standard_normal((400, 16)).astype(np.float32))

    shards = root / "shards"
    shards.mkdir()
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_safetensors({"embed.weight": weights["embed.weight"]}, str(shards / names[0]))
    save_safetensors({k: v for k, v in weights.items() if k != "embed.weight"}, str(shards / names[1]))
    weight_map = {k: names[0] if k == "embed.weight" else names[1] for k in weights}
    (shards / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    folder = root / "model"
    shutil.copytree(shards, folder)
    (folder / "config.json").write_text('{"hidden_size": 32}\n')
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text("{}\n")

    tz.compress_file(root / "model.safetensors", root / "model.tzip")
    tz.compress_file(root / "tuned.safetensors", root / "tuned.tzip", base=root / "model.safetensors")
    tz.compress_file(shards, root / "archive.tzip")
    tz.compress_folder(folder, root / "folder.tzip")
    tz.lossy.compress_file(root / "model.safetensors", root / "lossy.tzip", budget=0.5)
    tz.embeddings.save_file(np.load(root / "vectors.npy"), root / "embeddings.tzip", recall=0.9)
    keys = rng.standard_normal((2, 1, 2, 64, 16)).astype(np.float16)
    (root / "kv.tzip").write_bytes(tz.kv.compress(keys, keys * 0.5, bits=6))
    (root / "random.bin").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())

    result = {
        "safetensors": Made(root / "model.safetensors", Kind.SAFETENSORS),
        "numpy": Made(root / "vectors.npy", Kind.NUMPY),
        "model_folder": Made(folder, Kind.MODEL_FOLDER),
        "checkpoint": Made(root / "model.tzip", Kind.CHECKPOINT, root / "model.safetensors"),
        "checkpoint_base": Made(root / "tuned.tzip", Kind.CHECKPOINT, root / "tuned.safetensors"),
        "folder_archive": Made(root / "archive.tzip", Kind.FOLDER_ARCHIVE, shards),
        "compressed_folder": Made(root / "folder.tzip", Kind.COMPRESSED_FOLDER, folder),
        "lossy_weights": Made(root / "lossy.tzip", Kind.LOSSY_WEIGHTS, root / "model.safetensors"),
        "embeddings": Made(root / "embeddings.tzip", Kind.EMBEDDINGS, root / "vectors.npy"),
        "kv_cache": Made(root / "kv.tzip", Kind.KV_CACHE),
        "unknown": Made(root / "random.bin", Kind.UNKNOWN),
    }
    try:
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in weights.items()}, root / "model.pt")
        result["pytorch"] = Made(root / "model.pt", Kind.PYTORCH)
    except ImportError:
        pass
    return result


def _get(made: dict[str, Made], kind: str) -> Made:
    if kind not in made:
        pytest.skip("needs torch")
    return made[kind]


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# What refusals must name, per kind: the command that reads it.
NAMES = {"safetensors": "tensorzip compress", "pytorch": "tensorzip compress", "numpy": "tensorzip embeddings compress",
         "model_folder": "tensorzip compress", "compressed_folder": "tz.decompress_folder",
         "lossy_weights": "tz.lossy.load_file", "embeddings": "tz.embeddings.load_file", "kv_cache": "tz.kv.load_file",
         "unknown": "not a kind of file tensorzip knows"}


@pytest.mark.parametrize("kind", KINDS)
def test_identify(made, kind):
    item = _get(made, kind)
    assert identify(item.path).kind is item.kind


@pytest.mark.parametrize("kind", KINDS)
def test_decompress(made, kind, tmp_path, capsys):
    item = _get(made, kind)
    out = tmp_path / "out"
    code, stdout, err = _cli(capsys, "decompress", item.path, "-o", out)
    if kind in ("safetensors", "pytorch", "numpy", "model_folder", "unknown"):
        assert code == 1 and NAMES[kind] in err and not out.exists()
        return
    assert code == 0, err
    if kind in ("checkpoint", "checkpoint_base"):
        assert out.read_bytes() == item.original.read_bytes()
    elif kind in ("folder_archive", "compressed_folder"):
        assert _tree(out) == _tree(item.original)
    elif kind == "lossy_weights":
        decoded, original = load_safetensors(str(out)), load_safetensors(str(item.original))
        layout = {k: (v.dtype, v.shape) for k, v in original.items()}
        assert {k: (v.dtype, v.shape) for k, v in decoded.items()} == layout
        record = tz.lossy.describe(item.path)
        for name, array in decoded.items():
            error = np.abs(array.astype(np.float64) - original[name].astype(np.float64)).max()
            assert error <= record["tensors"][name]["max_abs_error"] + 1e-12
    elif kind == "embeddings":
        assert np.load(out).tobytes() == tz.embeddings.open(item.path).decode().tobytes()
    elif kind == "kv_cache":
        keys, values = tz.kv.decompress(item.path.read_bytes())
        with np.load(out) as saved:
            assert saved["keys"].tobytes() == keys.tobytes() and saved["values"].tobytes() == values.tobytes()


@pytest.mark.parametrize("face", ["load_file", "safe_open"])
@pytest.mark.parametrize("kind", KINDS)
def test_load_file_and_safe_open(made, kind, face):
    item = _get(made, kind)

    def read() -> dict[str, np.ndarray]:
        if face == "load_file":
            return tz.load_file(item.path)
        with tz.safe_open(item.path) as f:
            names = f.keys()
            return {k: f.get_tensor(k) for k in names}

    if kind in ("checkpoint", "checkpoint_base"):
        got, expected = read(), load_safetensors(str(item.original))
        assert got.keys() == expected.keys()
        assert all(got[k].tobytes() == expected[k].tobytes() for k in expected)
    elif kind == "folder_archive":
        expected = {}
        for shard in sorted(item.original.glob("*.safetensors")):
            expected |= load_safetensors(str(shard))
        got = read()
        assert got.keys() == expected.keys() and all(got[k].tobytes() == expected[k].tobytes() for k in expected)
    else:
        with pytest.raises(tz.TensorzipError) as raised:
            read()
        assert NAMES[kind] in str(raised.value) or kind == "unknown"


@pytest.mark.parametrize("kind", ["embeddings", "kv_cache", "lossy_weights"])
def test_tz_decompress_refuses_layer_blobs(made, kind):
    with pytest.raises(tz.WrongKindError, match=NAMES[kind].replace(".", r"\.")):
        tz.decompress(_get(made, kind).path.read_bytes())


@pytest.mark.parametrize("kind", KINDS)
def test_info(made, kind, capsys):
    item = _get(made, kind)
    code, out, err = _cli(capsys, "info", item.path, "--json")
    if kind == "unknown":
        assert code == 1 and NAMES["unknown"] in err
        return
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == item.kind.value
    assert doc["lossy"] is (kind in ("lossy_weights", "embeddings", "kv_cache"))
    if kind == "embeddings":  # the ratio of the data, not of the collection's internal parts
        assert doc["original_bytes"] == 400 * 16 * 4 and doc["achieved"]["recall_at_k"] >= 0.9
        assert doc["target"]["recall_at_k"] == 0.9
    if kind == "kv_cache":
        assert doc["original_bytes"] == 2 * 2 * 1 * 2 * 64 * 16 * 2 and doc["target"]["budget_bits_per_element"] == 6
        assert 8 * doc["stored_bytes"] / (2 * 2 * 2 * 64 * 16) <= 6
    if kind in ("checkpoint", "checkpoint_base", "lossy_weights"):
        assert doc["original_bytes"] == item.original.stat().st_size or kind == "lossy_weights"
        assert {t["name"] for t in doc["tensors"]} == set(load_safetensors(str(item.original)))
    if kind == "compressed_folder":
        assert doc["original_bytes"] == sum(len(b) for b in _tree(item.original).values())
    code, text, err = _cli(capsys, "info", item.path)
    assert code == 0 and item.kind is Kind.UNKNOWN or ("lossy" in text.split("\n")[0]) == doc["lossy"]


@pytest.mark.parametrize("kind", KINDS)
def test_verify(made, kind, capsys):
    item = _get(made, kind)
    code, out, err = _cli(capsys, "verify", item.path)
    if kind in ("safetensors", "pytorch", "numpy", "model_folder", "unknown"):
        assert code == 1 and NAMES[kind] in err
        return
    assert code == 0 and ("every checksum verified" in out or "every checksum of its" in out), err
    if kind in ("lossy_weights", "embeddings", "kv_cache"):  # never compared with data as if it were a checkpoint
        code, out, err = _cli(capsys, "verify", item.path, "--against", made["safetensors"].path)
        assert code == 1 and NAMES[kind] in err


@pytest.mark.parametrize("kind", KINDS)
def test_analyze(made, kind, capsys):
    item = _get(made, kind)
    code, out, err = _cli(capsys, "analyze", item.path, "--json")
    if kind in ("lossy_weights", "kv_cache", "unknown"):
        assert code == 1 and NAMES[kind] in err
        return
    assert code == 0, err
    record = json.loads(out)
    if kind in ("numpy", "embeddings"):
        assert record["kind"] == "representations" and record["representations"]["rows"] == 400
    else:
        assert record["kind"] == "checkpoint"
        names = {t["name"] for t in record["checkpoint"]["tensors"]} if "checkpoint" in record else None
        if names is not None:
            assert names == {"embed.weight", "layer.weight", "layer.bias", "step"}


@pytest.mark.parametrize("kind, name", [("embeddings", "out.pt"), ("embeddings", "out.safetensors"),
                                        ("kv_cache", "kv.pt"), ("checkpoint", "out.npy"),
                                        ("folder_archive", "out.safetensors"), ("lossy_weights", "out.pt")])
def test_decompress_never_writes_one_format_under_another_name(made, kind, name, tmp_path, capsys):
    code, _, err = _cli(capsys, "decompress", _get(made, kind).path, "-o", tmp_path / name)
    assert code == 1 and "decompresses to" in err or "restores a folder" in err
    assert not (tmp_path / name).exists()
