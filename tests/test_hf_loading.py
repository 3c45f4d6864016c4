"""Models load from .tzip where users load them: transformers, diffusers, safetensors' reader
API, accelerate-style empty models, and URLs read by byte range from a real HTTP server.

Every model is compared with the same model loaded from the original .safetensors: the state
dict byte for byte and the outputs with ``torch.equal``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import tensorzip as tz
from tensorzip import sample_data
from tensorzip.errors import InputFileError, TensorNotFoundError, TensorzipError

from .range_server import range_server

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from tensorzip.hf import load_into  # noqa: E402
from tensorzip.hf import safetensors as tzst  # noqa: E402
from tensorzip.hf.transformers import from_pretrained  # noqa: E402

SENTENCES = ["tensorzip loads compressed models", "where users load models"]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> Path:
    """The real all-MiniLM-L6-v2 folder (config, tokenizer, 1_Pooling/, model.safetensors)."""
    return sample_data.fetch_minilm_folder()


@pytest.fixture(scope="module")
def forms(minilm, tmp_path_factory) -> dict[str, Path]:
    """MiniLM as a compressed folder, a sharded compressed folder, an archive and one .tzip."""
    root = tmp_path_factory.mktemp("forms")
    sharded = root / "sharded"
    model = transformers.AutoModel.from_pretrained(minilm)
    model.save_pretrained(sharded, max_shard_size="20MB")
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm / name, sharded / name)
    assert len(list(sharded.glob("*.safetensors"))) > 1
    tz.compress_folder(minilm, root / "minilm.tzip")
    tz.compress_folder(sharded, root / "sharded.tzip")
    tz.compress_file(minilm, root / "minilm-archive.tzip")
    tz.compress_file(minilm / "model.safetensors", root / "model.tzip")
    return {"folder": root / "minilm.tzip", "sharded": root / "sharded.tzip", "archive": root / "minilm-archive.tzip",
            "file": root / "model.tzip", "sharded-original": sharded}


def _outputs(model, folder: Path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).last_hidden_state


def _same_state(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and torch.equal(sa[name].view(-1).view(torch.uint8),
                                                                 sb[name].view(-1).view(torch.uint8)), name


@pytest.mark.parametrize("form", ["folder", "sharded", "archive", "file"])
def test_minilm_from_every_compressed_form_is_bit_identical(minilm, forms, form):
    reference = transformers.AutoModel.from_pretrained(minilm)
    extra = {"config": transformers.AutoConfig.from_pretrained(minilm)} if form == "file" else {}
    model = from_pretrained(transformers.AutoModel, forms[form], **extra)
    assert type(model) is type(reference) and not model.training
    _same_state(model, reference)
    assert torch.equal(_outputs(model, minilm), _outputs(reference, minilm))


def test_from_pretrained_arguments_pass_through(minilm, forms):
    reference = transformers.BertModel.from_pretrained(minilm, dtype=torch.bfloat16, output_attentions=True)
    model, info = from_pretrained(transformers.BertModel, forms["folder"], dtype=torch.bfloat16,
                                  output_attentions=True, output_loading_info=True, device_map="cpu")
    assert model.dtype == torch.bfloat16 and model.config.output_attentions
    assert not info["missing_keys"]
    _same_state(model, reference)
    assert torch.equal(_outputs(model, minilm), _outputs(reference, minilm))


def test_gpt2_built_from_a_config(tmp_path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=500, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tz.compress_folder(tmp_path / "gpt2", tmp_path / "gpt2.tzip")
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2")
    model = from_pretrained(transformers.AutoModelForCausalLM, tmp_path / "gpt2.tzip")
    _same_state(model, reference)
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # still tied
    ids = torch.arange(20).reshape(2, 10)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_fine_tune_coded_against_its_base(minilm, tmp_path):
    state = tz.torch.load_state_dict(minilm)
    generator = torch.Generator().manual_seed(3)
    tuned = {k: (v + 1e-3 * torch.randn(v.shape, generator=generator) if "layer.5." in k else v).contiguous()
             for k, v in state.items()}  # the last layer tuned, the rest frozen
    ft = tmp_path / "ft"
    shutil.copytree(minilm, ft)
    from safetensors.torch import save_file

    save_file(tuned, ft / "model.safetensors", metadata={"format": "pt"})
    shutil.copytree(minilm, tmp_path / "base")
    report = tz.compress_folder(ft, tmp_path / "ft.tzip", base=tmp_path / "base")
    assert tz.info(next(Path(report.target).glob("*.tzip")))["base"]  # coded against the base, which paid
    reference = transformers.AutoModel.from_pretrained(ft)
    model = from_pretrained(transformers.AutoModel, tmp_path / "ft.tzip")  # its base found beside it
    _same_state(model, reference)
    assert torch.equal(_outputs(model, minilm), _outputs(reference, minilm))
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(tmp_path / "ft.tzip", moved / "ft.tzip")
    with pytest.raises(TensorzipError, match="base"):
        from_pretrained(transformers.AutoModel, moved / "ft.tzip")
    _same_state(from_pretrained(transformers.AutoModel, moved / "ft.tzip", base=tmp_path / "base"), reference)


def test_hub_cache_snapshot_of_symlinks(minilm, tmp_path):
    """A Hugging Face cache snapshot: every file a link into ../../blobs."""
    repo = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    snapshot = repo / "snapshots" / "abc123"
    for source in sorted(p for p in minilm.rglob("*") if p.is_file()):
        relative = source.relative_to(minilm)
        blob = repo / "blobs" / f"blob{abs(hash(str(relative)))}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, blob)
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    assert (snapshot / "model.safetensors").is_symlink()
    tz.compress_folder(snapshot, tmp_path / "snap.tzip")
    reference = transformers.AutoModel.from_pretrained(minilm)
    for path in (snapshot, tmp_path / "snap.tzip"):
        model = from_pretrained(transformers.AutoModel, path)
        _same_state(model, reference)
        assert torch.equal(_outputs(model, minilm), _outputs(reference, minilm))


# -- bad input: a TensorzipError saying what and where, nothing half-loaded ----------------------------


def test_missing_shard(forms, tmp_path):
    broken = tmp_path / "broken.tzip"
    shutil.copytree(forms["sharded"], broken)
    victim = sorted(broken.glob("*.tzip"))[0]
    victim.unlink()
    with pytest.raises(InputFileError, match=victim.name):
        from_pretrained(transformers.AutoModel, broken)


def test_shard_of_another_model_and_mismatched_config(forms, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(forms["folder"], other)
    torch.manual_seed(0)
    small = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                                    vocab_size=100)
    transformers.BertModel(small).save_pretrained(tmp_path / "small")
    tz.compress_file(tmp_path / "small" / "model.safetensors", other / "model.tzip", overwrite=True)
    with pytest.raises(InputFileError, match="could not load these weights into AutoModel.*mismatched"):
        from_pretrained(transformers.AutoModel, other)
    config = json.loads((forms["folder"] / "config.json").read_text())
    config["num_hidden_layers"] = 8  # two more layers than the weights hold
    (tmp_path / "deeper").mkdir()
    shutil.copytree(forms["folder"], tmp_path / "deeper" / "m.tzip")
    (tmp_path / "deeper" / "m.tzip" / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputFileError, match=r"parameters have no tensor \(encoder\.layer\.6"):
        from_pretrained(transformers.AutoModel, tmp_path / "deeper" / "m.tzip")
    model = from_pretrained(transformers.AutoModel, tmp_path / "deeper" / "m.tzip", strict=False)
    assert len(model.encoder.layer) == 8


def test_archive_without_config_and_single_file_without_one(minilm, forms, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(minilm / "model.safetensors", bare / "model.safetensors")
    tz.compress_file(bare, tmp_path / "bare.tzip")
    with pytest.raises(InputFileError, match="folder archive without a config.json.*config="):
        from_pretrained(transformers.AutoModel, tmp_path / "bare.tzip")
    with pytest.raises(InputFileError, match="only tensors.*config="):
        from_pretrained(transformers.AutoModel, forms["file"])
    with pytest.raises(InputFileError, match="no such file"):
        from_pretrained(transformers.AutoModel, tmp_path / "nothing.tzip")


# -- safetensors' API ------------------------------------------------------------------------------------


def test_safe_open_reads_tzip_and_safetensors_alike(minilm, forms):
    from safetensors import safe_open as st_safe_open
    from safetensors.torch import load_file as st_load_file

    original = minilm / "model.safetensors"
    expected = st_load_file(original)
    with st_safe_open(original, "pt") as f:
        expected_metadata = f.metadata()
    for path in (original, forms["file"], forms["folder"], forms["archive"]):
        loaded = tzst.load_file(path)
        assert list(loaded) == list(expected)
        for name in expected:
            assert torch.equal(loaded[name], expected[name]), (path, name)
        with tzst.safe_open(path, framework="pt") as f:
            assert sorted(f.keys()) == sorted(expected)
            name = "encoder.layer.0.attention.self.query.weight"
            part = f.get_slice(name)
            assert part.get_shape() == [384, 384] and part.get_dtype() == "F32"
            assert torch.equal(part[2:5], expected[name][2:5])
            assert torch.equal(f.get_tensor(name), expected[name])
            if path in (original, forms["file"]):
                assert f.metadata() == expected_metadata
            with pytest.raises(TensorNotFoundError):
                f.get_tensor("nope")
        with tzst.safe_open(path, framework="np") as f:
            array = f.get_tensor(name)
            assert isinstance(array, np.ndarray) and np.array_equal(array, expected[name].numpy())
    assert set(tzst.load(original.read_bytes())) == set(expected)
    blob = tzst.load(forms["file"].read_bytes(), framework="np")
    assert all(np.array_equal(blob[k], expected[k].numpy()) for k in expected)
    with pytest.raises(TensorzipError, match="framework 'flax'"):
        tzst.safe_open(forms["file"], framework="flax")


def test_load_into_an_empty_model_decodes_into_place(minilm, forms):
    accelerate = pytest.importorskip("accelerate")
    config = transformers.AutoConfig.from_pretrained(minilm)
    reference = transformers.AutoModel.from_pretrained(minilm)
    with accelerate.init_empty_weights():
        empty = transformers.BertModel(config)
    load_into(empty, forms["folder"], strict=False)  # position_ids is a buffer the checkpoint lacks
    assert not any(p.is_meta for p in empty.parameters())
    _same_state(empty, reference)
    ready = transformers.BertModel(config)  # real memory: decoded straight into it
    pointers = {n: p.data_ptr() for n, p in ready.named_parameters()}
    load_into(ready, forms["sharded"], strict=False)
    assert {n: p.data_ptr() for n, p in ready.named_parameters()} == pointers
    _same_state(ready, reference)
    with pytest.raises(InputFileError, match="missing"):
        load_into(transformers.BertModel(transformers.BertConfig(num_hidden_layers=7, hidden_size=384,
                                                                 num_attention_heads=12, intermediate_size=1536)),
                  forms["folder"])


def test_diffusers_pipeline(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("accelerate")
    from tensorzip.hf.diffusers import pipeline_from_pretrained

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(32, 64), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(16,), latent_channels=3,
                                  norm_num_groups=8, sample_size=16)
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=20)
    diffusers.LDMPipeline(vqvae=vae, unet=unet, scheduler=scheduler).save_pretrained(tmp_path / "ldm")
    tz.compress_folder(tmp_path / "ldm", tmp_path / "ldm.tzip")
    out = tmp_path / "ldm.tzip"
    guards = sorted(g.relative_to(out).as_posix() for g in out.rglob("*.safetensors"))
    assert guards == ["unet/diffusion_pytorch_model.safetensors", "vqvae/diffusion_pytorch_model.safetensors"]
    with pytest.raises(Exception) as raised:  # diffusers wraps it; the traceback shows the chain
        diffusers.LDMPipeline.from_pretrained(tmp_path / "ldm.tzip")
    chain, error = [], raised.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("compressed by tensorzip; load it with tensorzip.hf" in text for text in chain)
    reference = diffusers.LDMPipeline.from_pretrained(tmp_path / "ldm")
    pipe = pipeline_from_pretrained(diffusers.LDMPipeline, tmp_path / "ldm.tzip")
    for component in ("unet", "vqvae"):
        _same_state(getattr(pipe, component), getattr(reference, component))
        # diffusers leaves its weights in the file's memory map, at the file's (8-byte) offsets; conv kernels
        # round differently at other alignments (measured: up to 1.3e-6), so outputs are compared with the
        # reference's weights in freshly allocated memory, as ours are.
        for parameter in getattr(reference, component).parameters():
            parameter.data = parameter.data.clone()
    run = {"batch_size": 1, "num_inference_steps": 2, "output_type": "np"}
    ours = pipe(generator=torch.Generator().manual_seed(1), **run).images
    theirs = reference(generator=torch.Generator().manual_seed(1), **run).images
    assert np.array_equal(ours, theirs)


# -- URLs: a real HTTP server that serves ranges ----------------------------------------------------


def test_remote_one_tensor_transfers_its_chunks_and_the_header(forms, minilm):
    from tensorzip.container.format import PREAMBLE_SIZE, Preamble

    with open(forms["file"], "rb") as handle:
        header_length = Preamble.unpack(handle.read(PREAMBLE_SIZE), "model.tzip").header_length
    with range_server(forms["file"].parent) as (url, served):
        location = f"{url}/{forms['file'].name}"
        with tzst.safe_open(location, framework="pt") as f:
            assert served.bytes_sent <= header_length + 64 * 1024  # opening: the preamble and the header
            name = "encoder.layer.2.intermediate.dense.weight"
            stored = f._weights._sources[0].reader.entry(name).stored_bytes
            served.reset()
            tensor = f.get_tensor(name)
            assert served.bytes_sent == stored  # that tensor's chunks, nothing else
        expected = tzst.load_file(minilm / "model.safetensors")
        assert torch.equal(tensor, expected[name])
        loaded = tzst.load_file(location)
        assert all(torch.equal(loaded[k], expected[k]) for k in expected)
        model = from_pretrained(transformers.AutoModel, f"{url}/{forms['archive'].name}")
        _same_state(model, transformers.AutoModel.from_pretrained(minilm))


def test_remote_failures_name_the_url(forms, tmp_path):
    faults = [({}, InputFileError, "missing.tzip: not found"), ({"cut_after": 4096}, TensorzipError, "model.tzip"),
              ({"ignore_ranges": True}, TensorzipError, "model.tzip: .*(ignores byte ranges|cut short)")]
    for options, error, message in faults:
        name = "missing.tzip" if "not found" in message else "model.tzip"
        with range_server(forms["file"].parent, **options) as (url, _), pytest.raises(error, match=message):
            tzst.load_file(f"{url}/{name}")


def test_a_damaged_shard_names_file_tensor_and_chunk(forms, tmp_path):
    damaged = tmp_path / "damaged.tzip"
    shutil.copytree(forms["folder"], damaged)
    shard = damaged / "model.tzip"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(TensorzipError, match=r"model.tzip: tensor '.*' chunk \d+ at offset \d+.*checksum"):
        from_pretrained(transformers.AutoModel, damaged)  # raised from the decode-ahead thread, as it is
    with pytest.raises(TensorzipError, match="checksum"):
        tzst.load_file(damaged)


def test_paths_that_are_not_weights(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    for path, message in (("fifo", "not a regular file"), ("missing", "no such file"),
                          ("empty", "without weights|not a kind|neither"), ("notes.txt", "not a")):
        with pytest.raises(TensorzipError, match=message):
            tzst.load_file(tmp_path / path)  # never blocks on the FIFO
