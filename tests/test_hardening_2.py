"""Issue 17 (hardening II), one regression test per class the outside review found.

Class 1: references are resolved as a graph. A file coded against itself, or
files naming each other as base, are refused by name at the first repeat (not reopened level
after level); ``same_as`` copies count against a file-level expansion budget."""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest
from safetensors.numpy import save_file as save_safetensors

import tensorzip as tz
from tensorzip.cli import main

from .conftest import rewrite_header


@pytest.fixture
def coded(tmp_path):
    rng = np.random.default_rng(5)
    base = {"w": rng.standard_normal((512, 512)).astype(np.float32)}
    save_safetensors(base, str(tmp_path / "base.safetensors"))
    tuned = {"w": (base["w"] * np.float32(1.001)).astype(np.float32)}
    tz.save_file(tuned, tmp_path / "a.tzip", base=tmp_path / "base.safetensors")
    assert tz.info(tmp_path / "a.tzip")["base"] == "base.safetensors"
    return tmp_path


def _rebase(path, name):
    def edit(header):
        header["base"]["file"] = name

    path.write_bytes(rewrite_header(path.read_bytes(), edit))


def test_a_file_coded_against_itself_is_refused_at_once(coded, capsys):
    _rebase(coded / "a.tzip", "a.tzip")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(tz.BaseMismatchError, match="comes back to this file"):
        tz.load_file(coded / "a.tzip")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: no level after level
    for command in (["decompress", str(coded / "a.tzip"), "-o", str(coded / "out.safetensors")],
                    ["verify", str(coded / "a.tzip")]):
        assert main(command) == 1
        assert "comes back to this file" in capsys.readouterr().err
    assert not (coded / "out.safetensors").exists()


def test_files_naming_each_other_as_base_are_refused(coded):
    (coded / "b.tzip").write_bytes((coded / "a.tzip").read_bytes())
    _rebase(coded / "a.tzip", "b.tzip")
    _rebase(coded / "b.tzip", "a.tzip")
    with pytest.raises(tz.BaseMismatchError, match="comes back to this file"):
        tz.load_file(coded / "a.tzip")


def test_same_as_copies_count_against_the_file_expansion_budget(tmp_path):
    tensors = {"zeros": np.zeros(2 * 1024 * 1024, np.float32)}  # 8 MiB stored in a few bytes per chunk
    tz.save_file(tensors, tmp_path / "z.tzip")

    def edit(header):
        first = header["tensors"][0]
        header["tensors"] += [{"name": f"copy{i}", "dtype": first["dtype"], "shape": first["shape"],
                               "same_as": first["name"]} for i in range(1000)]

    bomb = tmp_path / "bomb.tzip"
    bomb.write_bytes(rewrite_header((tmp_path / "z.tzip").read_bytes(), edit))
    with pytest.raises(tz.LimitExceededError, match="declares .* in all"):
        tz.load_file(bomb)
    assert main(["verify", str(bomb)]) == 1
    tz.load_file(tmp_path / "z.tzip")  # one copy is fine


# -- class 4: whatever compress writes, decompress reads ------------------------------------


def test_the_writer_refuses_a_header_no_reader_accepts(tmp_path, monkeypatch):
    from tensorzip.container import writer

    monkeypatch.setattr(writer, "DEFAULT_MAX_HEADER_BYTES", 20_000)
    tensors = {f"layer.{i}.weight": np.zeros(4, np.float32) for i in range(400)}
    save_safetensors(tensors, str(tmp_path / "many.safetensors"))
    with pytest.raises(tz.LimitExceededError, match="400 tensors need a header .* split the checkpoint"):
        tz.compress_file(tmp_path / "many.safetensors", tmp_path / "many.tzip")
    assert not (tmp_path / "many.tzip").exists()


def test_memory_per_tensor_stays_constant_with_many_empty_tensors(tmp_path):
    from tensorzip.container import TzipWriter
    from tensorzip.container.writer import MAX_BATCH_TENSORS

    with TzipWriter(tmp_path / "e.tzip") as out:
        for i in range(3 * MAX_BATCH_TENSORS):
            out.add(f"t{i}", np.zeros(0, np.float32))
            assert len(out._pending) < MAX_BATCH_TENSORS  # queued tensors are coded in bounded batches
    assert len(tz.load_file(tmp_path / "e.tzip")) == 3 * MAX_BATCH_TENSORS


# -- class 2: bombs within the limits --------------------------------------------------------


def _constant_bomb(path, elements: int) -> None:
    """A valid .tzip of one float32 tensor of ``elements`` zeros, every chunk the same few
    constant-coded bytes: ~40 bytes stored per chunk of 1 MiB declared, inside every limit."""
    import json as _json
    import math as _math

    from tensorzip import _native
    from tensorzip.container.format import DATA_START

    from .conftest import build_tzip, split_tzip, write_alone

    small = path.with_name("one-chunk.tzip")
    write_alone(small, {"w": np.zeros(1, np.float32)})
    per_chunk = split_tzip(small.read_bytes())[2]["tensors"][0]["codec"]["chunk_elements"]
    write_alone(small, {"w": np.zeros(per_chunk, np.float32)})
    _, data, header = split_tzip(small.read_bytes())
    (offset, length, crc), = header["tensors"][0]["chunks"]
    chunk = data[offset - DATA_START : offset - DATA_START + length]
    count = _math.ceil(elements / per_chunk)
    last = elements - (count - 1) * per_chunk
    write_alone(small, {"w": np.zeros(last, np.float32)})
    _, tail_data, tail_header = split_tzip(small.read_bytes())
    (t_offset, t_length, t_crc), = tail_header["tensors"][0]["chunks"]
    tail = tail_data[t_offset - DATA_START : t_offset - DATA_START + t_length]
    chunks = [[DATA_START + i * length, length, crc] for i in range(count - 1)]
    chunks.append([DATA_START + (count - 1) * length, len(tail), _native.crc32c(tail)])
    header["tensors"][0].update(shape=[elements], chunks=chunks)
    path.write_bytes(build_tzip(chunk * (count - 1) + tail, _json.dumps(header).encode()))
    small.unlink()


_PEAK = """
import resource, sys
import tensorzip as tz
from tensorzip.cli import main
status = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(status)
"""


def _peak_kib(*argv) -> tuple[int, int]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _PEAK, *map(str, argv)], capture_output=True, text=True,
                          timeout=300)
    return done.returncode, int(done.stdout.strip().splitlines()[-1])


def test_streaming_commands_decode_a_bomb_in_bounded_memory(tmp_path):
    bomb = tmp_path / "bomb.tzip"
    _constant_bomb(bomb, 256 * 1024 * 1024)  # 1 GiB declared, ~80 KB stored
    assert bomb.stat().st_size < 200_000
    code, idle = _peak_kib("info", bomb)
    assert code == 0
    for argv in (["verify", bomb], ["analyze", bomb], ["decompress", bomb, "-o", tmp_path / "out.safetensors"]):
        code, peak = _peak_kib(*argv)
        assert code == 0, argv
        assert peak - idle < 300_000, (argv, peak - idle)  # KiB: pieces of 64 MB, not the declared 1 GiB
    assert (tmp_path / "out.safetensors").stat().st_size > 1 << 30


def test_in_memory_reads_refuse_above_a_limit_the_user_can_raise(tmp_path):
    bomb = tmp_path / "bomb.tzip"
    _constant_bomb(bomb, 64 * 1024 * 1024)  # 256 MiB declared
    small = tz.ReadLimits(max_memory_bytes=100 * 1024 * 1024)
    with pytest.raises(tz.LimitExceededError, match="max_memory_bytes"):
        tz.load_file(bomb, limits=small)
    with pytest.raises(tz.LimitExceededError, match="streams it to a file"), tz.safe_open(bomb, limits=small) as f:
        f.get_tensor("w")
    assert tz.load_file(bomb)["w"].nbytes == 256 * 1024 * 1024  # the default: half the machine's memory
    assert tz.ReadLimits().max_memory_bytes > 0


def test_a_header_whose_parse_would_exceed_the_memory_limit_is_refused_before_parsing(tmp_path):
    tz.save_file({f"t{i}": np.zeros(1, np.float32) for i in range(200)}, tmp_path / "m.tzip")
    size = len((tmp_path / "m.tzip").read_bytes())
    with pytest.raises(tz.LimitExceededError, match="to parse"):
        tz.load_file(tmp_path / "m.tzip", limits=tz.ReadLimits(max_memory_bytes=size * 10))


# -- class 5: targets and parameters that would make a result meaningless ---------------------


@pytest.mark.parametrize("options", [{"step": float("inf")}, {"max_abs_error": float("inf")}, {"levels": 2.5},
                                     {"max_abs_error": 1e300}, {"step": 1e300},
                                     {"step": 0.1, "window": 1.5}, {"bits": float("inf")}, {"bits": float("nan")}],
                         ids=str)
def test_kv_settings_that_would_decode_to_nonsense_are_refused(options):
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((1, 1, 2, 16, 8)).astype(np.float32)
    with pytest.raises(tz.TensorzipError):
        tz.kv.compress(keys, keys.copy(), **options)


def test_embedding_targets_measured_on_nothing_or_infinite_are_refused(capsys, tmp_path):
    vectors = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    for options in ({"recall": 0.9, "sample_queries": 0}, {"level": float("inf")}, {"recall": float("nan")}):
        with pytest.raises(tz.TensorzipError):
            tz.embeddings.compress(vectors, **options)
    collection = tz.embeddings.open(tz.embeddings.compress(vectors, recall=0.9))
    for k in (-3, 0, 2.5, 201):
        with pytest.raises(tz.TensorzipError, match="k must be an integer from 1"):
            collection.search(vectors[:2], k=k)
    np.save(tmp_path / "v.npy", vectors)
    with pytest.raises(SystemExit) as usage:
        main(["embeddings", "compress", str(tmp_path / "v.npy"), "--recall", "0.9", "--sample", "0"])
    assert usage.value.code == 2 and "--sample: 0 is outside [1, 16,777,216]" in capsys.readouterr().err


# -- class 6: every JSON reader and writer says what is wrong, never a raw exception ----------


@pytest.mark.parametrize("value", ["1" * 5000, '"\\ud800"', "[" * 50000 + "]" * 50000], ids=["bigint", "surrogate",
                                                                                             "deep"])
def test_hostile_json_values_in_every_reader_are_tensorzip_errors(tmp_path, value):
    from .conftest import build_tzip

    tz.save_file({"w": np.zeros(4, np.float32)}, tmp_path / "m.tzip")

    def edit(header):
        header["metadata"] = {"x": "PLACEHOLDER"}

    blob = rewrite_header((tmp_path / "m.tzip").read_bytes(), edit)
    from .conftest import split_tzip

    _, data, header = split_tzip(blob)
    raw = json.dumps(header).replace('"PLACEHOLDER"', value).encode()
    (tmp_path / "bad.tzip").write_bytes(build_tzip(data, raw))
    with pytest.raises(tz.TensorzipError):
        tz.load_file(tmp_path / "bad.tzip")
    text = '{"__metadata__": {"x": ' + value + '}}'
    safetensors_bytes = len(text).to_bytes(8, "little") + text.encode()
    (tmp_path / "bad.safetensors").write_bytes(safetensors_bytes)
    with pytest.raises(tz.TensorzipError):
        tz.compress_file(tmp_path / "bad.safetensors", tmp_path / "x.tzip")
    folder = tmp_path / "model"
    folder.mkdir()
    save_safetensors({"w": np.zeros(4, np.float32)}, str(folder / "model-1.safetensors"))
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"w": "model-1.safetensors"}, "x": '
                                                         + value + "}")
    for call in (lambda: tz.compress_file(folder, tmp_path / "a.tzip"),
                 lambda: tz.compress_folder(folder, tmp_path / "f.tzip")):
        with pytest.raises(tz.TensorzipError):
            call()
    assert main(["info", str(tmp_path / "bad.tzip")]) == 1


def test_names_and_metadata_that_utf8_cannot_hold_are_refused_when_written(tmp_path):
    with pytest.raises(tz.TensorzipError, match="lone UTF-16 surrogate"):
        tz.save_file({"\ud800": np.zeros(1, np.float32)}, tmp_path / "a.tzip")
    with pytest.raises(tz.TensorzipError, match="lone UTF-16 surrogate"):
        tz.save_file({"w": np.zeros(1, np.float32)}, tmp_path / "b.tzip", metadata={"k": "\udfff"})
    assert not (tmp_path / "a.tzip").exists() and not (tmp_path / "b.tzip").exists()


# -- class 3: secondary inputs are checked by kind before they are opened ---------------------


def test_a_fifo_as_any_secondary_input_is_refused_without_blocking(tmp_path, capsys):
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    weights = tmp_path / "m.safetensors"
    save_safetensors({"w": np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)}, str(weights))
    tz.compress_file(weights, tmp_path / "m.tzip")
    np.save(tmp_path / "v.npy", np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32))
    commands = [
        ["verify", tmp_path / "m.tzip", "--against", fifo],
        ["embeddings", "compress", tmp_path / "v.npy", "--recall", "0.9", "--queries", fifo, "-o", tmp_path / "e.tzip"],
        ["compress", weights, "--lossy", "--budget", "0.3", "--calibration", fifo, "-o", tmp_path / "l.tzip"],
        ["analyze", tmp_path / "v.npy", "--labels", fifo],
        ["compress", weights, "--base", fifo, "-o", tmp_path / "b.tzip"],
    ]
    for command in commands:  # a blocking open would hang here forever
        assert main([str(part) for part in command]) == 1, command
        assert "not a regular file" in capsys.readouterr().err, command
    assert main(["compress", str(weights), "--lossy", "--budget", "0.3", "--calibration", str(tmp_path / "v.npy"),
                 "-o", str(tmp_path / "l.tzip")]) == 1
    assert "not a .npz" in capsys.readouterr().err


def test_decoding_a_compressed_folder_never_follows_a_link_out_of_it(tmp_path, capsys):
    import os

    folder = tmp_path / "model"
    folder.mkdir()
    save_safetensors({"w": np.zeros(8, np.float32)}, str(folder / "model.safetensors"))
    tz.compress_folder(folder, tmp_path / "model.tzip")
    (tmp_path / "secret.txt").write_text("not yours")
    os.symlink(tmp_path / "secret.txt", tmp_path / "model.tzip" / "leak.txt")
    assert main(["decompress", str(tmp_path / "model.tzip"), "-o", str(tmp_path / "back")]) == 1
    assert "outside the folder" in capsys.readouterr().err and not (tmp_path / "back").exists()
    assert main(["verify", str(tmp_path / "model.tzip")]) == 1


def test_a_truncated_zip_pt_is_refused_not_read_as_weights(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({f"w{i}": torch.randn(128, 128) for i in range(4)}, tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    for cut in (len(data) // 2, len(data) - 30):
        (tmp_path / "cut.pt").write_bytes(data[:cut])
        with pytest.raises(tz.InputFileError, match="damaged or truncated|runs past the end"):
            tz.compress_file(tmp_path / "cut.pt", tmp_path / "cut.tzip")
        assert not (tmp_path / "cut.tzip").exists()


def test_an_archive_whose_index_has_a_shard_name_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    save_safetensors({"w": np.zeros(8, np.float32)}, str(folder / "model-1.safetensors"))
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"w": "model-1.safetensors"}}')
    tz.compress_file(folder, tmp_path / "a.tzip")

    def edit(header):
        header["source"]["index"]["name"] = "model-1.safetensors"

    (tmp_path / "bad.tzip").write_bytes(rewrite_header((tmp_path / "a.tzip").read_bytes(), edit))
    with pytest.raises(tz.HeaderError, match="has the name of one of its shards"):
        tz.decompress_file(tmp_path / "bad.tzip", tmp_path / "back")
    assert not (tmp_path / "back").exists()


def test_a_codec_config_without_an_id_is_named_by_every_face(tmp_path, capsys):
    from .conftest import write_alone

    write_alone(tmp_path / "c.tzip", {"w": np.zeros(4, np.float32)})

    def edit(header):
        header["tensors"][0]["codec"].pop("id")

    (tmp_path / "bad.tzip").write_bytes(rewrite_header((tmp_path / "c.tzip").read_bytes(), edit))
    for command in (["info"], ["verify"], ["decompress"]):
        assert main([*command, str(tmp_path / "bad.tzip")]) == 1
        assert "string 'id'" in capsys.readouterr().err


@pytest.mark.parametrize("sensitivity", ["tiny column", "huge column", "tiny rows"])
def test_lossy_sensitivities_that_overflow_the_grid_are_refused(tmp_path, sensitivity):
    rng = np.random.default_rng(0)
    save_safetensors({"m": rng.standard_normal((64, 64)).astype(np.float32)}, str(tmp_path / "l.safetensors"))
    column = np.ones(64)
    if sensitivity == "tiny column":
        column[3] = 1e-300
    elif sensitivity == "huge column":
        column[3] = 1e300
    given = (np.full(64, 1e-300), np.ones(64)) if sensitivity == "tiny rows" else column
    with pytest.raises(tz.TensorzipError, match="sensitivities"):
        tz.lossy.compress_file(tmp_path / "l.safetensors", tmp_path / "l.tzip", budget=0.3, sensitivity={"m": given})
    assert not (tmp_path / "l.tzip").exists()


@pytest.mark.parametrize("threads", [2**40, -1, 2.5, True])
def test_thread_counts_outside_the_range_are_refused_before_native_work(tmp_path, threads):
    save_safetensors({"w": np.zeros(8, np.float32)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(tz.TensorzipError, match="threads must be a whole number"):
        tz.compress_file(tmp_path / "m.safetensors", tmp_path / "m.tzip", threads=threads)
    with pytest.raises(tz.TensorzipError, match="threads must be a whole number"):
        tz.decompress(tz.compress(np.zeros(3)), threads=threads)
    assert not (tmp_path / "m.tzip").exists()


def test_torch_tensors_without_dense_data_are_refused_by_name():
    torch = pytest.importorskip("torch")
    for tensor, kind in ((torch.eye(3).to_sparse(), "sparse"), (torch.empty(3, device="meta"), "meta")):
        with pytest.raises(tz.UnsupportedDtypeError, match=kind):
            tz.compress(tensor)
    flipped = torch.arange(6.0).flip(0)  # a negative-stride view: stored as its values
    assert torch.equal(tz.decompress(tz.compress(flipped)), flipped)


def test_an_output_name_the_system_cannot_hold_is_an_output_error(tmp_path):
    save_safetensors({"w": np.zeros(8, np.float32)}, str(tmp_path / "m.safetensors"))
    with pytest.raises(tz.OutputFileError, match="too long"):
        tz.compress_file(tmp_path / "m.safetensors", tmp_path / ("y" * 300 + ".tzip"))


@pytest.mark.parametrize("matrix", ["one row", "two rows", "boolean"])
def test_analyze_of_degenerate_matrices_reports_undefined_measures_as_such(tmp_path, capsys, matrix):
    rng = np.random.default_rng(0)
    values = {"one row": np.ones((1, 16), np.float32), "two rows": rng.random((2, 16)),
              "boolean": rng.random((50, 16)) > 0.5}[matrix]
    np.save(tmp_path / "m.npy", values)
    assert main(["analyze", str(tmp_path / "m.npy"), "--html", str(tmp_path / "r.html")]) == 0
    assert (tmp_path / "r.html").is_file() and "effective rank" in capsys.readouterr().out


def test_analyze_refuses_values_whose_squares_overflow(tmp_path, capsys):
    np.save(tmp_path / "m.npy", np.random.default_rng(0).random((50, 16)) * 1e300)
    assert main(["analyze", str(tmp_path / "m.npy"), "--html", str(tmp_path / "r.html")]) == 1
    assert "overflow" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_names_the_system_cannot_use_are_errors_naming_them(tmp_path, capsys):
    import os

    weights = tmp_path / "m.safetensors"
    save_safetensors({"w": np.zeros(8, np.float32)}, str(weights))
    tz.compress_file(weights, tmp_path / "m.tzip")
    os.symlink(tmp_path / "loop.tzip", tmp_path / "loop.tzip")
    long = str(tmp_path / ("z" * 300))
    for argv in (["compress", str(weights), "-o", long + ".tzip"], ["decompress", str(tmp_path / "m.tzip"), "-o", long],
                 ["compress", str(weights), "--base", long, "-o", str(tmp_path / "q.tzip")],
                 ["decompress", str(tmp_path / "m.tzip"), "-o", str(tmp_path / "loop.tzip"), "--force"]):
        assert main(argv) == 1, argv
        assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(tz.OutputFileError, match="loops"):
        tz.save_file({"w": np.zeros(2)}, tmp_path / "loop.tzip")


@pytest.mark.parametrize("shape", [[1] * 65, [0, 2**61]], ids=["65 dims", "2^61"])
def test_a_safetensors_input_with_an_impossible_shape_is_refused(tmp_path, shape):
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0 if 0 in shape else 4]}}).encode()
    (tmp_path / "x.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * (0 if 0 in shape else 4))
    with pytest.raises(tz.InputFileError, match="dimensions, or more elements"):
        tz.compress_file(tmp_path / "x.safetensors", tmp_path / "x.tzip")


def test_a_reader_refused_in_its_constructor_says_nothing_more_when_collected(tmp_path, capfd):
    import gc

    tz.save_file({"w": np.zeros(2)}, tmp_path / "m.tzip")
    with pytest.raises(tz.TensorzipError):
        tz.load_file(tmp_path / "m.tzip", threads=2**40)
    gc.collect()
    assert "Exception ignored" not in capfd.readouterr().err


def test_analyze_profiles_big_tensors_in_pieces_with_exact_counts(tmp_path):
    from tensorzip.analysis.weights import profile_in_pieces, tensor_profile
    from tensorzip.container import TzipReader

    rng = np.random.default_rng(5)
    w = (rng.standard_normal(3_000_000) * 0.02).astype(np.float32)
    w[::7] = 0
    w[5] = np.nan
    w[9] = np.inf
    w[11] = np.float32(1e-42)  # a denormal
    tz.save_file({"w": w, "h": w.astype(np.float16).astype(np.float32)}, tmp_path / "m.tzip")
    with TzipReader(tmp_path / "m.tzip") as reader:
        for name, array in (("w", w), ("h", w.astype(np.float16).astype(np.float32))):
            whole = tensor_profile(name, array)
            assert profile_in_pieces(reader, reader.entry(name)) == whole  # one piece: the same profile
            pieces = profile_in_pieces(reader, reader.entry(name), piece_bytes=1 << 20)  # 12 pieces
            for key in ("zeros", "denormals", "nans", "infs", "hidden", "bytes", "shape", "dtype"):
                assert pieces[key] == pytest.approx(whole[key]) if isinstance(whole[key], float) \
                    else pieces[key] == whole[key], key
            assert abs(pieces["order0_bits"] - whole["order0_bits"]) < 0.1
