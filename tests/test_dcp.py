"""tensorzip.dcp in a real torch.distributed group: two gloo processes save (each rank coding
its own items), two load, and one process loads what two saved (DCP reshards)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dcp = pytest.importorskip("torch.distributed.checkpoint")

from tensorzip.dcp import TensorzipReader  # noqa: E402

from .dcp_worker import expected_state, flat  # noqa: E402

WORKER = Path(__file__).with_name("dcp_worker.py")


def _free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def _ranks(mode: str, path: Path, world: int = 2, base: Path | None = None) -> None:
    port = _free_port()
    extra = [str(base)] if base is not None else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKER.parent), os.environ.get("PYTHONPATH", "")])}
    processes = [subprocess.Popen([sys.executable, str(WORKER), str(rank), str(world), port, mode, str(path),
                                   *extra],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for rank in range(world)]
    outputs = [p.communicate(timeout=240)[0].decode(errors="replace") for p in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]


def test_save_on_two_ranks_load_on_two_and_on_one(tmp_path):
    path = tmp_path / "step-3"
    _ranks("save", path)
    files = sorted(p.name for p in path.iterdir())
    assert ".metadata" in files and len([f for f in files if f.endswith(".distcp")]) == 2  # one file per rank
    metadata = dcp.FileSystemReader(path).read_metadata()
    descriptors = {tuple(info.transform_descriptors or ()) for info in metadata.storage_data.values()}
    assert descriptors == {("stream.tensorzip/2",)}  # every item went through tensorzip
    _ranks("load", path)

    # One process, no process group: DCP reshards what two ranks wrote into whole tensors.
    expected = expected_state()
    target = {"model": {k: torch.zeros_like(v) for k, v in expected["model"].items()},
              "optimizer": {"state": {i: {"exp_avg": torch.zeros_like(s["exp_avg"]),
                                          "exp_avg_sq": torch.zeros_like(s["exp_avg_sq"]),
                                          "step": torch.zeros_like(s["step"])}
                                      for i, s in expected["optimizer"]["state"].items()}},
              "embedding": torch.zeros(512, 32, dtype=torch.bfloat16), "step": 0}
    dcp.load(target, storage_reader=TensorzipReader(path), no_dist=True)
    got, want = flat(target), flat({**expected, "optimizer": {"state": expected["optimizer"]["state"]}})
    assert got.keys() == want.keys()
    for name, value in want.items():
        if isinstance(value, torch.Tensor):
            raw = value.contiguous().view(-1).view(torch.uint8)
            assert torch.equal(got[name].view(-1).view(torch.uint8), raw), name
        else:
            assert got[name] == value, name


def test_a_plain_reader_names_the_extension_it_lacks(tmp_path):
    path = tmp_path / "step-3"
    _ranks("save", path)
    target = {"embedding": torch.zeros(512, 32, dtype=torch.bfloat16)}
    with pytest.raises(dcp.api.CheckpointException) as info:
        dcp.load(target, storage_reader=dcp.FileSystemReader(path), no_dist=True)
    assert "Unknown extension name='stream.tensorzip'" in repr(info.value.failures)


def _one_process_round_trip(path, state, writer):
    dcp.save(state, storage_writer=writer, no_dist=True)
    target = {k: torch.zeros_like(v) if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    dcp.load(target, storage_reader=TensorzipReader(path), no_dist=True)
    for name, value in state.items():
        assert torch.equal(target[name].reshape(-1).view(torch.uint8), value.reshape(-1).view(torch.uint8)), name


def test_every_dtype_and_a_view_come_back_exactly(tmp_path):
    """Tensors tensorzip codes go in directly; complex ones (which it does not) as torch.save bytes."""
    from tensorzip.dcp import TensorzipWriter

    generator = torch.Generator().manual_seed(0)
    base = torch.randn(64, 48, generator=generator)
    state = {"fp32": base, "bf16": base.to(torch.bfloat16), "fp16": base.half(), "int64": torch.arange(300),
             "bool": base > 0, "view": base[::2, 5:17], "scalar": torch.tensor(3.5),
             "complex": torch.randn(16, dtype=torch.complex64, generator=generator), "empty": torch.zeros(0, 7)}
    _one_process_round_trip(tmp_path / "c", state, TensorzipWriter(tmp_path / "c", threads=1))
    metadata = dcp.FileSystemReader(tmp_path / "c").read_metadata()
    assert {tuple(i.transform_descriptors) for i in metadata.storage_data.values()} == {("stream.tensorzip/2",)}


def test_a_writer_at_level_max_saves_smaller_and_loads_exactly(tmp_path):
    from tensorzip.dcp import TensorzipWriter
    from tensorzip.errors import TensorzipError

    generator = torch.Generator().manual_seed(1)
    state = {"w": (torch.randn(512, 768, generator=generator) * 0.02).to(torch.bfloat16),
             "step": torch.tensor(7)}
    sizes = {}
    for level in ("default", "max"):
        folder = tmp_path / level
        _one_process_round_trip(folder, state, TensorzipWriter(folder, threads=1, level=level))
        sizes[level] = sum(f.stat().st_size for f in folder.glob("*.distcp"))
    assert sizes["max"] < sizes["default"], sizes
    with pytest.raises(TensorzipError, match="level must be one of"):
        TensorzipWriter(tmp_path / "bad", level="fast")


def test_checkpoints_of_format_1_still_load(tmp_path):
    """Version 1 wrote every tensor item as torch.save bytes through the extension (markers T and R):
    the extension itself, under its old descriptor, writes exactly that."""
    from tensorzip.dcp import TensorzipStreams

    class VersionOne(TensorzipStreams):
        def get_descriptor(self) -> str:
            return f"{self.registry_name()}/1"

    state = {"w": torch.randn(128, 64, generator=torch.Generator().manual_seed(1)), "step": torch.tensor(7)}
    path = tmp_path / "v1"
    _one_process_round_trip(path, state, dcp.FileSystemWriter(path, _extensions=[VersionOne()]))
    metadata = dcp.FileSystemReader(path).read_metadata()
    assert {tuple(i.transform_descriptors) for i in metadata.storage_data.values()} == {("stream.tensorzip/1",)}


def _sizes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def test_a_chain_of_checkpoints_saved_on_two_ranks_loads_on_two_and_on_one(tmp_path):
    """Step 4 saved against step 3 (every rank codes its items against the same items of step 3)."""
    from tensorzip.dcp.items import BASE_RECORD

    _ranks("save", tmp_path / "step-3")
    _ranks("save", tmp_path / "step-4", base=tmp_path / "step-3")
    assert (tmp_path / "step-4" / BASE_RECORD).is_file()
    _ranks("load-later", tmp_path / "step-4")
    expected = expected_state(4)
    target = {"model": {k: torch.zeros_like(v) for k, v in expected["model"].items()}}
    dcp.load(target, storage_reader=TensorzipReader(tmp_path / "step-4"), no_dist=True)
    for name, value in expected["model"].items():
        assert torch.equal(target["model"][name].view(torch.int32), value.view(torch.int32)), name


def test_chains_in_one_process_and_their_bases_found_given_or_refused(tmp_path):
    from tensorzip.dcp import TensorzipWriter

    generator = torch.Generator().manual_seed(5)
    states = [{"w": torch.randn(256, 128, generator=generator), "b": torch.randn(4096, generator=generator)}]
    for _ in range(2):  # each step moves every weight by a few units in the last place
        states.append({k: v + v.abs() * 2e-7 * torch.randn(v.shape, generator=generator)
                       for k, v in states[-1].items()})
    folders = [tmp_path / f"step-{i}" for i in range(3)]
    dcp.save(states[0], storage_writer=TensorzipWriter(folders[0], threads=1), no_dist=True)
    for i in (1, 2):
        dcp.save(states[i], storage_writer=TensorzipWriter(folders[i], threads=1, base=folders[i - 1]), no_dist=True)
    assert _sizes(folders[2]) < 0.75 * _sizes(folders[0])  # the chain pays

    def load(folder, **kwargs):
        target = {k: torch.zeros_like(v) for k, v in states[0].items()}
        dcp.load(target, storage_reader=TensorzipReader(folder, **kwargs), no_dist=True)
        return target

    for name, value in load(folders[2]).items():  # two bases down, found beside
        assert torch.equal(value.view(torch.int32), states[2][name].view(torch.int32)), name
    moved = tmp_path / "elsewhere"
    folders[1].rename(moved)
    with pytest.raises(dcp.api.CheckpointException) as info:
        load(folders[2])
    assert "'step-1', which is not at" in repr(info.value.failures)
    assert "pass its folder as TensorzipReader(path, base=...)" in repr(info.value.failures)
    for name, value in load(folders[2], base=moved).items():
        assert torch.equal(value.view(torch.int32), states[2][name].view(torch.int32)), name
    with pytest.raises(dcp.api.CheckpointException) as info:
        load(folders[2], base=folders[0])  # the wrong checkpoint: refused, nothing loaded silently
    assert "the base folder is not the checkpoint it was saved against" in repr(info.value.failures)


def test_every_command_knows_dcp_folders(tmp_path, capsys):
    """info describes both kinds (without unpickling DCP's metadata); the commands that do not read
    them refuse by name, saying what does."""
    from tensorzip.cli.main import main
    from tensorzip.container.kinds import Kind, identify
    from tensorzip.dcp import TensorzipWriter

    state = {"w": torch.randn(300, 200, generator=torch.Generator().manual_seed(2)), "step": 5}
    dcp.save(state, storage_writer=dcp.FileSystemWriter(tmp_path / "plain"), no_dist=True)
    dcp.save(state, storage_writer=TensorzipWriter(tmp_path / "coded"), no_dist=True)
    assert identify(tmp_path / "plain").kind is Kind.DCP_FOLDER
    assert identify(tmp_path / "coded").kind is Kind.DCP_COMPRESSED
    assert main(["info", str(tmp_path / "coded")]) == 0
    out = capsys.readouterr().out
    assert "compressed by tensorzip: 1 rank file" in out and "TensorzipReader(path)" in out
    assert main(["info", str(tmp_path / "plain")]) == 0
    assert "TensorzipWriter(path)" in capsys.readouterr().out
    for command in ("compress", "decompress", "verify", "ls"):
        for folder, hint in (("plain", "tensorzip compress"), ("coded", "TensorzipReader(path)")):
            if (command, folder) == ("compress", "plain"):
                continue  # converted: test_a_plain_dcp_folder_compresses_and_comes_back_byte_for_byte
            assert main([command, str(tmp_path / folder)]) != 0
            err = capsys.readouterr().err
            assert "torch.distributed.checkpoint (DCP) folder" in err and hint in err, (command, folder, err)
    assert main(["compress", str(tmp_path / "plain"), "--archive"]) != 0
    assert "compresses to a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coded", "plain"]  # nothing written


def _same_files(a: Path, b: Path) -> None:
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*"))
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*"))
    for name in names:
        if (a / name).is_file():
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_a_plain_dcp_folder_compresses_and_comes_back_byte_for_byte(tmp_path, capsys):
    """DCP's own writer on two ranks; `tensorzip compress` makes a compressed folder (each rank
    file a .tzip, .metadata copied unread); decompress gives every file back byte for byte, and
    DCP loads the restored folder (resharded into one process)."""
    from tensorzip.cli.main import main
    from tensorzip.container.kinds import Kind, identify

    plain = tmp_path / "plain"
    _ranks("save-plain", plain)
    original = sum(p.stat().st_size for p in plain.iterdir())
    assert main(["compress", str(plain), "-o", str(tmp_path / "plain.tzip")]) == 0
    assert "__0_0.distcp" in capsys.readouterr().out
    compressed = tmp_path / "plain.tzip"
    assert identify(compressed).kind is Kind.COMPRESSED_FOLDER
    assert {p.name for p in compressed.iterdir()} >= {".metadata", "__0_0.tzip", "__1_0.tzip"}
    assert sum(p.stat().st_size for p in compressed.iterdir()) < 0.9 * original
    assert main(["verify", str(compressed)]) == 0
    assert main(["info", str(compressed)]) == 0 and main(["ls", str(compressed / "__0_0.tzip")]) == 0
    capsys.readouterr()
    assert main(["info", str(compressed / "__0_0.tzip")]) == 0
    assert "torch.distributed.checkpoint rank file of" in capsys.readouterr().out
    assert main(["decompress", str(compressed), "-o", str(tmp_path / "back")]) == 0
    _same_files(plain, tmp_path / "back")
    assert identify(tmp_path / "back").kind is Kind.DCP_FOLDER
    expected = expected_state()
    target = {"model": {k: torch.zeros_like(v) for k, v in expected["model"].items()},
              "embedding": torch.zeros(512, 32, dtype=torch.bfloat16), "step": 0}
    dcp.load(target, storage_reader=dcp.FileSystemReader(tmp_path / "back"), no_dist=True)
    assert target["step"] == 3 and torch.equal(target["embedding"].view(torch.int16),
                                               expected["embedding"].view(torch.int16))
    assert all(torch.equal(target["model"][k], v) for k, v in expected["model"].items())


def test_dcp_rank_files_keep_what_is_not_a_weights_only_item(tmp_path):
    """Items weights-only refuses (a pickled object), a false end-of-zip signature inside a
    tensor's bytes and bytes after the last item all come back exactly; only storages of items
    that pass are coded as tensors."""
    import tensorzip as tz
    from tensorzip.inputs.dcp_file import DistcpFile

    signature = torch.frombuffer(bytearray(b"PK\x05\x06" + bytes(range(256)) * 64), dtype=torch.uint8).clone()
    state = {"w": torch.randn(64, 64, generator=torch.Generator().manual_seed(4)), "trap": signature,
             "when": __import__("datetime").date(2026, 12, 3), "step": 9}
    folder = tmp_path / "ck"
    dcp.save(state, storage_writer=dcp.FileSystemWriter(folder), no_dist=True)
    rank_file = folder / "__0_0.distcp"
    with open(rank_file, "ab") as handle:
        handle.write(b"trailing bytes DCP never wrote")
    parsed = DistcpFile(rank_file)
    assert parsed.kept_items >= 1 and {s.dtype for s in parsed.storages} >= {"float32", "uint8"}
    parsed.close()
    tz.compress_file(rank_file, tmp_path / "r.tzip")
    tz.decompress_file(tmp_path / "r.tzip", tmp_path / "r.distcp")
    assert (tmp_path / "r.distcp").read_bytes() == rank_file.read_bytes()


def test_chains_stop_at_a_keyframe_and_bad_bases_are_refused(tmp_path, monkeypatch):
    import json

    import tensorzip.dcp as tzdcp
    from tensorzip.errors import TensorzipError

    monkeypatch.setattr(tzdcp, "MAX_DEPTH", 2)
    generator = torch.Generator().manual_seed(9)
    state = {"w": torch.randn(128, 64, generator=generator)}
    folders = [tmp_path / f"step-{i}" for i in range(4)]
    for i, folder in enumerate(folders):
        state = {"w": state["w"] + state["w"].abs() * 2e-7}
        base = folders[i - 1] if i else None
        dcp.save(state, storage_writer=tzdcp.TensorzipWriter(folder, threads=1, base=base), no_dist=True)
    depths = [json.loads((f / "tensorzip-dcp.json").read_text()).get("depth", 0) for f in folders]
    assert depths == [0, 1, 2, 0]  # the fourth save is a keyframe: loading never goes more than 2 back
    target = {"w": torch.zeros_like(state["w"])}
    dcp.load(target, storage_reader=TensorzipReader(folders[3]), no_dist=True)
    assert torch.equal(target["w"].view(torch.int32), state["w"].view(torch.int32))
    with pytest.raises(TensorzipError, match="over its own base"):
        tzdcp.TensorzipWriter(folders[2], base=folders[2])
    (tmp_path / "other").mkdir()
    with pytest.raises(TensorzipError, match="must be a folder beside"):
        tzdcp.TensorzipWriter(tmp_path / "other" / "step-9", base=folders[2])


def test_a_damaged_item_coded_against_a_base_is_refused_by_name(tmp_path):
    from tensorzip.dcp import TensorzipWriter
    from tensorzip.dcp.items import ItemReader
    from tensorzip.errors import CorruptDataError

    w = torch.randn(256, 64, generator=torch.Generator().manual_seed(3))
    dcp.save({"w": w}, storage_writer=TensorzipWriter(tmp_path / "a", threads=1), no_dist=True)
    dcp.save({"w": w + w.abs() * 2e-7}, storage_writer=TensorzipWriter(tmp_path / "b", threads=1, base=tmp_path / "a"),
             no_dist=True)
    (rank_file,) = (tmp_path / "b").glob("*.distcp")
    data = bytearray(rank_file.read_bytes())
    assert data[:1] == b"B"
    frame_length = int.from_bytes(data[1:5], "little")
    head = json.loads(data[5 : 5 + frame_length])
    head["length"] = 1 << 40  # a huge declared size: refused before anything is read or allocated
    raw = json.dumps(head).encode()
    damaged = b"B" + len(raw).to_bytes(4, "little") + raw + bytes(data[5 + frame_length :])
    with pytest.raises(CorruptDataError, match="lies outside the file"):
        ItemReader(tmp_path / "b").decode(memoryview(damaged), "item")
    with pytest.raises(CorruptDataError, match="frame of an item coded against a base is damaged"):
        ItemReader(tmp_path / "b").decode(memoryview(b"B" + (5).to_bytes(4, "little") + b"{nope"), "item")


def test_golden_dcp_rank_file_restores_byte_for_byte(tmp_path):
    import tensorzip as tz

    from .conftest import rewrite_header, split_tzip

    golden = Path(__file__).parent / "golden" / "dcp_rank_file_v1"
    blob = (golden / "__0_0.tzip").read_bytes()
    source = split_tzip(blob)[2]["source"]
    assert source["format"] == "torch-zip" and source["container"] == "dcp" and source["file"] == "__0_0.distcp"
    tz.decompress_file(golden / "__0_0.tzip", tmp_path / "__0_0.distcp")
    assert (tmp_path / "__0_0.distcp").read_bytes() == (golden / "__0_0.distcp").read_bytes()
    bad = tmp_path / "bad.tzip"
    bad.write_bytes(rewrite_header(blob, lambda h: h["source"].update(container="tar")))
    with pytest.raises(tz.TensorzipError, match="container"):
        tz.decompress_file(bad, tmp_path / "x.distcp")
