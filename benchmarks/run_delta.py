"""Fine-tunes and training runs: tensorzip coding a checkpoint against its base,
side by side with ZipNN's delta mode, BitX (XOR + byte planes + zstd-3) and
tensorzip without the base, on the same files in one run; then dedup on a
checkpoint whose embedding is tied (stored twice under two names).

Data: all-MiniLM-L6-v2 fine-tuned on CPU (``finetune_data.py``, seeded), in FP32
and BF16: the base against the last checkpoint (the fine-tune pair), and each
checkpoint against the one before it (a training run).

Run ``python benchmarks/run_delta.py`` (writes its section of ``benchmarks/RESULTS.md``).
Single-threaded throughout; every output is decoded and compared byte for byte.
"""

import argparse
import io
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

import tensorzip
from delta_peers import BitX, ZipNNDelta
from finetune_data import prepare_finetune
from machine import describe
from results_file import write_section
from tensorzip.files import compress_file, decompress_file

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


class Tensorzip:
    """tensorzip through its file API, into and out of memory, with or without the base."""

    def __init__(self, with_base: bool):
        self.with_base = with_base
        self.name = "tensorzip-delta" if with_base else "tensorzip (no base)"

    def compress(self, source: Path, base: Path) -> bytes:
        out = io.BytesIO()
        compress_file(source, out, threads=1, base=base if self.with_base else None)
        return out.getvalue()

    def decompress(self, blob: bytes, base: Path) -> bytes:
        out = io.BytesIO()
        decompress_file(blob, out, threads=1, base=base if self.with_base else None)
        return out.getvalue()


class BytesPeer:
    """A peer that works on the file's bytes (and the base's bytes)."""

    def __init__(self, peer):
        self.peer = peer
        self.name = peer.name

    def compress(self, source: Path, base: Path) -> bytes:
        return self.peer.compress(bytearray(source.read_bytes()), base.read_bytes())

    def decompress(self, blob: bytes, base: Path) -> bytes:
        return self.peer.decompress(blob, base.read_bytes())


def measure(compressor, source: Path, base: Path, reps: int) -> dict:
    original = source.read_bytes()
    best_c = best_d = float("inf")
    blob = b""
    for _ in range(reps):
        t0 = time.perf_counter()
        blob = compressor.compress(source, base)
        best_c = min(best_c, time.perf_counter() - t0)
    for _ in range(reps):
        t0 = time.perf_counter()
        back = compressor.decompress(blob, base)
        best_d = min(best_d, time.perf_counter() - t0)
        if back != original:
            raise AssertionError(f"{compressor.name}: {source.name} does not round-trip bit-exactly")
    mb = len(original) / 1e6
    return {"name": compressor.name, "size": len(blob), "ratio": len(original) / len(blob),
            "c_mbs": mb / best_c, "d_mbs": mb / best_d}


def pair_lines(label: str, source: Path, base: Path, compressors: list, reps: int) -> tuple[list[str], bool]:
    rows = [measure(c, source, base, reps) for c in compressors]
    ours = rows[0]
    lines = [f"### {label}: `{source.name}` against `{base.name}` ({source.stat().st_size:,} bytes)", "",
             "| compressor | stored (B) | ratio | vs tensorzip-delta | compress MB/s | decompress MB/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['size']:,} | {r['ratio']:.3f} | {r['size'] / ours['size'] - 1:+.1%} | "
                     f"{r['c_mbs']:,.1f} | {r['d_mbs']:,.1f} |")
    won = all(ours["size"] < r["size"] for r in rows[1:])
    lines += ["", f"tensorzip-delta smallest: {'yes' if won else 'NO'}; every output decoded bit-exactly.", ""]
    return lines, won


def dedup_lines(fp32: Path) -> list[str]:
    """A two-shard checkpoint folder whose second shard repeats the word embedding as a
    masked-LM output layer (tied weights saved untied, as happens across shards)."""
    tensors = load_file(str(fp32))
    names = list(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": {n: tensors[n] for n in names[:half]},
              "model-00002-of-00002.safetensors": {n: tensors[n] for n in names[half:]}}
    tied = "cls.predictions.decoder.weight"
    shards["model-00002-of-00002.safetensors"][tied] = tensors["embeddings.word_embeddings.weight"].copy()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "minilm-sharded"
        folder.mkdir()
        weight_map = {}
        for file_name, part in shards.items():
            save_file(part, str(folder / file_name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, file_name))
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}, indent=2))
        folder_bytes = sum(p.stat().st_size for p in folder.iterdir())
        archive = Path(tmp) / "minilm-sharded.tzip"
        report = compress_file(folder, archive, threads=1)
        decompress_file(archive, Path(tmp) / "back", threads=1)
        exact = all((folder / p.name).read_bytes() == p.read_bytes() for p in (Path(tmp) / "back").iterdir())
        return [
            "### Dedup: a sharded folder that stores the word embedding twice", "",
            "all-MiniLM-L6-v2 FP32 split into two shards with an index json; shard 2 also holds "
            f"`{tied}`, a copy of the word embeddings in shard 1 (a masked-LM head tied to the input "
            "embedding, saved untied).", "",
            "| | bytes |", "|---|---:|",
            f"| the folder (2 shards + index) | {folder_bytes:,} |",
            f"| tensorzip, one .tzip for the folder | {report.compressed_bytes:,} |", "",
            f"Input bytes not stored again (the repeated tensor, found by CRC-32C and confirmed byte for byte): "
            f"{report.dedup_saved_bytes:,} ({report.dedup_saved_bytes / folder_bytes:.1%} of the folder); "
            f"folder rebuilt byte for byte: {'yes' if exact else 'NO'}.", "",
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    files = prepare_finetune()
    steps = sorted(int(k.split("-")[1]) for k in files if k.startswith("ckpt-") and k.endswith("-fp32"))
    compressors = [Tensorzip(True), Tensorzip(False), BytesPeer(ZipNNDelta()), BytesPeer(BitX())]
    lines = [
        "## Fine-tunes and training runs (coding against a base)", "",
        f"- Machine: {describe()}; Python {platform.python_version()}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- tensorzip {tensorzip.__version__}, zipnn {metadata.version('zipnn')}, "
        f"zstandard {metadata.version('zstandard')}, numpy {np.__version__}",
        "- Data: all-MiniLM-L6-v2 fine-tuned on CPU with a contrastive loss on passages of the Python "
        f"documentation (`benchmarks/finetune_data.py`, seeded), checkpoints at steps {steps}.",
        "- Reproduce: `python benchmarks/run_delta.py`. One thread; best of "
        f"{args.reps}; sizes are whole files (header included); every output decoded and compared byte for byte.",
        "- zipnn-delta: ZipNN's delta mode per tensor (XOR with the base tensor, then its byte grouping and "
        "Huffman). bitx: XOR with the base tensor, byte planes, zstd-3.", "",
    ]
    must = []
    for dtype in ("fp32", "bf16"):
        pairs = [("fine-tune", files[f"ckpt-{steps[-1]}-{dtype}"], files[f"base-{dtype}"])]
        pairs += [(f"consecutive checkpoints ({a} → {b})", files[f"ckpt-{b}-{dtype}"], files[f"ckpt-{a}-{dtype}"])
                  for a, b in zip(steps, steps[1:], strict=False)]
        for label, source, base in pairs:
            text, won = pair_lines(f"{dtype.upper()} {label}", source, base, compressors, args.reps)
            lines += text
            must.append((f"{dtype.upper()} {label}", won))
            print("\n".join(text), flush=True)
    lines += dedup_lines(files["base-fp32"])
    lines += ["| must show | met |", "|---|---|"]
    lines += [f"| {label}: delta smaller than no-base, ZipNN delta and BitX | {'yes' if won else 'NO'} |"
              for label, won in must]
    text = "\n".join(lines)
    print(text)
    write_section(RESULTS, "delta", text)
    if not all(won for _, won in must):
        sys.exit("tensorzip-delta was not the smallest on every pair")


if __name__ == "__main__":
    main()
