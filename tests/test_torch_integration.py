"""PyTorch in and out: .pt / pytorch_model.bin files as input (loaded only with
weights_only=True, anything but a flat dict of tensors refused), .safetensors or
torch.save output, folders of .bin shards, and ``tensorzip.torch.load_state_dict``
reading every kind of checkpoint straight into tensors."""

from __future__ import annotations

import json
import pickle
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import tensorzip as tz  # noqa: E402
from tensorzip.cli.main import main  # noqa: E402
from tensorzip.hf.transformers import from_pretrained  # noqa: E402
from tensorzip.torch import load_state_dict  # noqa: E402

from .test_model_folder import save_model, tiny_bert, tree  # noqa: E402


def raw(tensor):
    """A tensor's bytes (NaN payloads and -0.0 compared exactly)."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def assert_same_tensors(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert torch.equal(raw(got[name]), raw(tensor)), name


def awkward_state() -> dict:
    """Every kind of tensor a state dict holds: bf16, ints, bool, views, shared storage, a NaN payload, empty."""
    torch.manual_seed(1)
    base = torch.randn(40, 30)
    nan = torch.tensor([1.0, float("nan"), -0.0, float("inf")]).view(torch.int32)
    nan[1] = 0x7FC00123  # a NaN with a payload
    return {
        "weight": base,
        "weight.T": base.t(),  # a non-contiguous view of the same storage
        "rows": base[5:9],  # a slice sharing it
        "tied": base,  # the same tensor twice (tied weights)
        "bf16": torch.randn(17, 3).to(torch.bfloat16),
        "half": torch.randn(8).half(),
        "steps": torch.arange(10, dtype=torch.int64),
        "mask": torch.rand(12) > 0.5,
        "nan": nan.view(torch.float32),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(3.5, dtype=torch.float64),
        "param": torch.nn.Parameter(torch.ones(3)),
    }


def test_pt_round_trip_is_bit_exact(tmp_path, capsys):
    state = awkward_state()
    torch.save(state, tmp_path / "model.pt")
    assert main(["compress", str(tmp_path / "model.pt")]) == 0
    assert "decompress restores model.pt byte for byte" in capsys.readouterr().out
    with tz.safe_open(tmp_path / "model.tzip") as f:
        assert f.metadata() == {"format": "pt"}
    with tz.container.TzipReader(tmp_path / "model.tzip") as reader:
        source = reader.header.source
        assert source["format"] == "torch-zip" and source["flat"] and source["file"] == "model.pt"
        assert "tied" not in reader and "weight.T" not in reader  # views of the one stored storage
        assert sorted(view[0] for view in source["views"]) == ["rows", "tied", "weight.T"]

    assert main(["decompress", str(tmp_path / "model.tzip"), "-o", str(tmp_path / "model.safetensors")]) == 0
    assert "state dict as .safetensors, tensors bit-exact" in capsys.readouterr().out
    from safetensors.torch import load_file

    assert_same_tensors(load_file(tmp_path / "model.safetensors"), {k: v.detach() for k, v in state.items()})

    assert main(["decompress", str(tmp_path / "model.tzip"), "-o", str(tmp_path / "back.pt")]) == 0
    assert (tmp_path / "back.pt").read_bytes() == (tmp_path / "model.pt").read_bytes()  # byte for byte
    assert main(["decompress", str(tmp_path / "model.tzip")]) == 1  # model.pt is there: not replaced
    assert_same_tensors(torch.load(tmp_path / "back.pt", weights_only=True), state)
    assert main(["verify", str(tmp_path / "model.tzip"), "--against", str(tmp_path / "model.pt")]) == 0
    assert_same_tensors(load_state_dict(tmp_path / "model.pt"), state)


def test_state_dict_wrapper_and_bin_name(tmp_path):
    state = {"a": torch.randn(5, 5), "b": torch.arange(3)}
    torch.save({"state_dict": state}, tmp_path / "pytorch_model.bin")
    tz.compress_file(tmp_path / "pytorch_model.bin", tmp_path / "m.tzip")
    tz.decompress_file(tmp_path / "m.tzip", tmp_path / "back.bin")
    back = torch.load(tmp_path / "back.bin", weights_only=True)
    assert list(back) == ["state_dict"]
    assert_same_tensors(back["state_dict"], state)
    tz.decompress_file(tmp_path / "m.tzip", tmp_path / "m.safetensors")  # the wrapper only matters to torch files
    assert_same_tensors(load_state_dict(tmp_path / "m.safetensors"), state)
    # The legacy (non-zip) torch format is read without mmap.
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    tz.compress_file(tmp_path / "legacy.pt", tmp_path / "legacy.tzip")
    assert_same_tensors(load_state_dict(tmp_path / "legacy.tzip"), state)


class Custom:
    def __init__(self):
        self.value = 3


class Sneaky:
    """Unpickling it with full pickle would create a file; weights_only must refuse it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("case", ["custom class", "pickled code", "not torch", "truncated"])
def test_what_weights_only_refuses_is_refused(tmp_path, case, capsys):
    path = tmp_path / "model.pt"
    marker = tmp_path / "executed"
    if case == "custom class":
        torch.save({"w": torch.ones(2), "obj": Custom()}, path)
        match = "without unpickling arbitrary objects"
    elif case == "pickled code":
        path.write_bytes(pickle.dumps({"w": Sneaky(marker)}))
        match = "not a PyTorch file"  # a bare pickle, not torch.save's: refused, never unpickled
    elif case == "not torch":
        path.write_bytes(b"this is not a checkpoint")
        match = "not a PyTorch file"
    else:
        torch.save({"w": torch.ones(1000)}, path)
        path.write_bytes(path.read_bytes()[:-100])
        match = "truncated"
    with pytest.raises(tz.TensorzipError, match=match) as info:
        tz.compress_file(path, tmp_path / "out.tzip")
    assert str(path) in str(info.value)
    assert isinstance(info.value, tz.InputFileError)
    assert main(["compress", str(path)]) == 1
    assert str(path) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]  # no output, and nothing ran
    assert not marker.exists()


def _training_checkpoint() -> dict:
    """What a training script saves: model and AdamW state (int keys), scheduler, step, RNG."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)
    for _ in range(3):
        model(torch.randn(5, 8)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": 3, "loss": 0.125, "pair": (1, 2.5), "rng": torch.get_rng_state(), "note": "checkpoint"}


@pytest.mark.parametrize("case", ["training", "non-tensor value", "a list", "nested", "int key",
                                  "state_dict beside others", "sparse", "complex", "float8", "untyped storage",
                                  "one tensor", "empty dict", "shared across entries"])
def test_any_checkpoint_torch_loads_comes_back_byte_for_byte(tmp_path, case, capsys):
    path = tmp_path / "ckpt.pt"
    value = {
        "training": _training_checkpoint,
        "non-tensor value": lambda: {"w": torch.ones(2), "epoch": 3},
        "a list": lambda: [torch.ones(2), torch.arange(5)],
        "nested": lambda: {"encoder": {"w": torch.randn(6, 2)}, "head": [torch.zeros(3)]},
        "int key": lambda: {0: torch.ones(2), 1: {"x": torch.ones(1)}},
        "state_dict beside others": lambda: {"state_dict": {"w": torch.ones(2)}, "optimizer": {"lr": 0.1}},
        "sparse": lambda: {"s": torch.eye(3).to_sparse()},
        "complex": lambda: {"c": torch.randn(4, dtype=torch.complex64)},
        "float8": lambda: {"f": torch.randn(16).to(torch.float8_e4m3fn)},
        "untyped storage": lambda: {"raw": torch.UntypedStorage(7), "w": torch.ones(3)},
        "one tensor": lambda: torch.randn(5, 5),
        "empty dict": dict,
        "shared across entries": lambda: (lambda w: {"model": {"w": w}, "ema": {"w": w}, "view": w[1:]})(
            torch.randn(4, 4)),
    }[case]()
    torch.save(value, path)
    original = path.read_bytes()
    assert main(["compress", str(path)]) == 0
    assert main(["verify", str(tmp_path / "ckpt.tzip"), "--against", str(path)]) == 0
    path.rename(tmp_path / "original.pt")
    assert main(["decompress", str(tmp_path / "ckpt.tzip")]) == 0  # to ckpt.pt, its own name
    assert "byte for byte" in capsys.readouterr().out
    assert path.read_bytes() == original
    tz.decompress_file(tmp_path / "ckpt.tzip", tmp_path / "again.pt")
    assert (tmp_path / "again.pt").read_bytes() == original


def test_a_nested_checkpoint_has_no_safetensors_form(tmp_path):
    torch.save(_training_checkpoint(), tmp_path / "ckpt.pt")
    tz.compress_file(tmp_path / "ckpt.pt", tmp_path / "ckpt.tzip")
    assert main(["decompress", str(tmp_path / "ckpt.tzip"), "-o", str(tmp_path / "x.safetensors")]) == 1
    with pytest.raises(tz.OutputFileError, match="not a plain state dict .* decompress it to ckpt.pt"):
        tz.decompress_file(tmp_path / "ckpt.tzip", tmp_path / "x.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "ckpt.tzip"]
    doc = tz.info(tmp_path / "ckpt.tzip")
    assert doc["top_level"] == ["model", "optimizer", "scheduler", "epoch", "loss", "pair", "rng", "note"]
    assert set(doc["parts"]) == {"model", "optimizer step", "optimizer exp_avg", "optimizer exp_avg_sq", "rng"}
    assert doc["parts"]["optimizer exp_avg"]["tensors"] == 4


def test_tied_weights_stay_tied(tmp_path):
    """A .pt whose two entries share one storage: restored no larger (and identical)."""
    embedding = torch.randn(1000, 64)
    torch.save({"wte.weight": embedding, "lm_head.weight": embedding}, tmp_path / "tied.pt")
    tz.compress_file(tmp_path / "tied.pt", tmp_path / "tied.tzip")
    tz.decompress_file(tmp_path / "tied.tzip", tmp_path / "back.pt")
    assert (tmp_path / "back.pt").read_bytes() == (tmp_path / "tied.pt").read_bytes()
    assert (tmp_path / "tied.tzip").stat().st_size < embedding.numel() * 4  # one copy stored
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert back["wte.weight"].untyped_storage().data_ptr() == back["lm_head.weight"].untyped_storage().data_ptr()


def test_load_state_dict_from_every_kind_of_checkpoint(tmp_path):
    for dtype in (None, torch.bfloat16):
        model = tiny_bert(dtype)
        expected = model.state_dict()
        label = "bf16" if dtype else "fp32"
        folder = save_model(model, tmp_path / label)
        tz.compress_folder(folder, tmp_path / f"{label}.tzip")
        shards = tmp_path / f"{label}-shards"  # an archive takes the shards and the index alone
        shards.mkdir()
        for path in [*folder.glob("*.safetensors"), *folder.glob("*.index.json")]:
            shutil.copyfile(path, shards / path.name)
        tz.compress_file(shards, tmp_path / f"{label}-archive.tzip")
        tz.compress_file(next(folder.glob("*-00001-*.safetensors")), tmp_path / f"{label}-shard.tzip")
        for source in (tmp_path / f"{label}.tzip", tmp_path / f"{label}-archive.tzip", folder):
            got = load_state_dict(source)
            assert_same_tensors(got, expected)
            assert all(t.device.type == "cpu" for t in got.values())
        assert {t.dtype for t in load_state_dict(tmp_path / f"{label}.tzip").values()} == {dtype or torch.float32}
        shard = load_state_dict(tmp_path / f"{label}-shard.tzip")
        assert shard and all(torch.equal(t, expected[k]) for k, t in shard.items())
        fresh = transformers.BertModel(model.config).to(dtype or torch.float32)
        fresh.load_state_dict(load_state_dict(tmp_path / f"{label}.tzip", device=torch.device("cpu")))
        assert_same_tensors(fresh.state_dict(), expected)


def test_load_state_dict_makes_no_temporary_file(tmp_path, monkeypatch):
    model = tiny_bert()
    folder = save_model(model, tmp_path / "bert")
    tz.compress_folder(folder, tmp_path / "bert.tzip")

    def forbidden(*args, **kwargs):
        raise AssertionError("a temporary file was made")

    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "TemporaryDirectory"):
        monkeypatch.setattr(tempfile, name, forbidden)
    assert_same_tensors(load_state_dict(tmp_path / "bert.tzip"), model.state_dict())


def test_load_state_dict_refusals(tmp_path, monkeypatch):
    with pytest.raises(tz.InputFileError, match="no such file"):
        load_state_dict(tmp_path / "absent.tzip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(tz.InputFileError, match="no weights found"):
        load_state_dict(tmp_path / "empty")
    clash = tmp_path / "clash"
    clash.mkdir()
    tz.save_file({"w": np.zeros(2, np.float32)}, clash / "a.tzip")
    tz.save_file({"w": np.ones(2, np.float32)}, clash / "b.tzip")
    with pytest.raises(tz.InputFileError, match="'w' is in both a.tzip and b.tzip"):
        load_state_dict(clash)
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(tz.TensorzipError, match="needs PyTorch: pip install torch"):
        load_state_dict(clash / "a.tzip")
    (tmp_path / "x.pt").write_bytes(b"PK\x03\x04" + bytes(60))  # what torch.save writes first: a zip
    with pytest.raises(tz.TensorzipError, match="needs PyTorch"):
        tz.compress_file(tmp_path / "x.pt", tmp_path / "x.tzip")


def test_folder_of_pytorch_bin_shards(tmp_path, capsys):
    model = tiny_bert()
    state = model.state_dict()
    folder = tmp_path / "bin-model"
    folder.mkdir()
    model.config.to_json_file(folder / "config.json")
    names = list(state)
    halves = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2 :]}
    weight_map = {}
    for file, keys in halves.items():
        torch.save({k: state[k] for k in keys}, folder / file)
        weight_map.update(dict.fromkeys(keys, file))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    torch.save(Custom(), folder / "training_args.bin")  # a pickled object weights_only refuses: copied as it is

    assert main(["compress", str(folder)]) == 0
    assert "byte for byte" in capsys.readouterr().out
    out = tmp_path / "bin-model.tzip"
    assert sorted(p.name for p in out.glob("*.tzip")) == ["pytorch_model-00001-of-00002.tzip",
                                                            "pytorch_model-00002-of-00002.tzip"]
    assert (out / "training_args.bin").read_bytes() == (folder / "training_args.bin").read_bytes()
    assert set(json.loads((out / "pytorch_model.bin.index.json").read_text())["weight_map"].values()) == {
        "pytorch_model-00001-of-00002.tzip", "pytorch_model-00002-of-00002.tzip"}
    assert_same_tensors(load_state_dict(out), state)

    assert main(["decompress", str(out), "-o", str(tmp_path / "restored")]) == 0
    original, restored = tree(folder), tree(tmp_path / "restored")
    assert restored.keys() == original.keys()
    for name in ("config.json", "pytorch_model.bin.index.json", "training_args.bin"):
        assert original[name] == restored[name]
    for name in halves:  # byte for byte, the pickle included
        assert original[name] == restored[name]
    assert main(["verify", str(out), "--against", str(folder)]) == 0
    back = transformers.BertModel.from_pretrained(tmp_path / "restored")
    assert_same_tensors(back.state_dict(), state)

    # A pytorch_model*.bin that torch would not load safely stops the folder, naming the file.
    torch.save({"model": {"w": torch.ones(1)}, "obj": Custom()}, folder / "pytorch_model-00002-of-00002.bin")
    with pytest.raises(tz.InputFileError, match="pytorch_model-00002-of-00002.bin.*without unpickling"):
        tz.compress_folder(folder, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_golden_torch_zip_files_restore_byte_for_byte(tmp_path):
    golden = Path(__file__).parent / "golden" / "torch_zip_v1"
    for name in ("training", "flat"):
        tz.decompress_file(golden / f"{name}.tzip", tmp_path / f"{name}.pt")
        assert (tmp_path / f"{name}.pt").read_bytes() == (golden / f"{name}.pt").read_bytes()
        assert main(["verify", str(golden / f"{name}.tzip"), "--against", str(golden / f"{name}.pt")]) == 0
    tz.decompress_file(golden / "flat.tzip", tmp_path / "flat.safetensors")
    expected = torch.load(golden / "flat.pt", weights_only=True)
    assert_same_tensors(load_state_dict(tmp_path / "flat.safetensors"), expected)


def test_a_trainer_checkpoint_folder_restores_byte_for_byte(tmp_path, capsys):
    """A real transformers.Trainer checkpoint-N/ folder: model shard, optimizer.pt, scheduler.pt,
    rng_state.pth, trainer_state.json, training_args.bin (which weights_only refuses: kept)."""
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=600, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=2)

    class Examples(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            ids = torch.randint(0, 600, (12,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "labels": torch.tensor(i % 2)}

    args = transformers.TrainingArguments(output_dir=str(tmp_path / "run"), per_device_train_batch_size=4, max_steps=2,
                                          save_steps=2, report_to=[], use_cpu=True, seed=0, disable_tqdm=True)
    transformers.Trainer(model=transformers.BertForSequenceClassification(config), args=args,
                         train_dataset=Examples()).train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert {"optimizer.pt", "scheduler.pt", "training_args.bin", "model.safetensors"} <= {
        p.name for p in checkpoint.iterdir()}
    capsys.readouterr()
    assert main(["compress", str(checkpoint), "-o", str(tmp_path / "ckpt.tzip")]) == 0
    assert "optimizer.pt" in capsys.readouterr().out
    names = {p.name for p in (tmp_path / "ckpt.tzip").iterdir()}
    assert {"optimizer.tzip", "scheduler.tzip", "model.tzip", "training_args.bin"} <= names
    assert "optimizer.pt" not in names
    assert main(["verify", str(tmp_path / "ckpt.tzip"), "--against", str(checkpoint)]) == 0
    assert main(["decompress", str(tmp_path / "ckpt.tzip"), "-o", str(tmp_path / "back")]) == 0
    assert tree(tmp_path / "back") == tree(checkpoint)
    # Loading the model from it takes the model shard, not the optimizer's tensors.
    model = from_pretrained(transformers.BertForSequenceClassification, tmp_path / "ckpt.tzip")
    expected = transformers.BertForSequenceClassification.from_pretrained(checkpoint)
    assert_same_tensors(model.state_dict(), expected.state_dict())


def test_each_training_checkpoint_coded_against_the_previous(tmp_path):
    """--base for checkpoints of one run: the previous .pt or its .tzip; restored byte for byte."""
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for step in range(1, 21):
        model(torch.randn(16, 64)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 10 == 0:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step},
                       tmp_path / f"ckpt-{step}.pt")
    tz.compress_file(tmp_path / "ckpt-10.pt", tmp_path / "ckpt-10.tzip")
    plain = tz.compress_file(tmp_path / "ckpt-20.pt", tmp_path / "plain.tzip")
    for base in ("ckpt-10.pt", "ckpt-10.tzip"):
        report = tz.compress_file(tmp_path / "ckpt-20.pt", tmp_path / f"against-{base}.tzip", base=tmp_path / base)
        assert report.base is not None and report.compressed_bytes < plain.compressed_bytes
        tz.decompress_file(tmp_path / f"against-{base}.tzip", tmp_path / "back.pt", base=tmp_path / base)
        assert (tmp_path / "back.pt").read_bytes() == (tmp_path / "ckpt-20.pt").read_bytes()
