"""A multi-GB checkpoint made of real weights, for the memory and scale benchmark.

Every tensor of all-MiniLM-L6-v2 (FP32) is written ``copies`` times, each copy
after the first with its rows (the elements of a vector) in a seeded order of its
own and perturbed the way fine-tuning moves weights (a seeded relative change of
about 1e-3 on every element), so the file compresses like a real FP32 checkpoint
of that size rather than like repeated bytes: with the rows in place, tensorzip
codes each later copy against the first (format feature ``reference``) and the
file shrank 1.98x where a real checkpoint of distinct layers gives 1.2x. Written straight to disk tensor by tensor (the
safetensors layout: 8-byte header length, JSON header, data), so making it needs
little memory; seeded, so reruns give the same bytes.

    python benchmarks/scale_data.py [--gigabytes 4]
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np
from safetensors import safe_open

from data import DATA_DIR, prepare

SEED = 20261123


def scale_path(gigabytes: float) -> Path:
    return DATA_DIR / f"scale-{gigabytes:g}gb-fp32-v2.safetensors"  # v2: copies permuted


def make_scale_checkpoint(gigabytes: float = 4.0) -> Path:
    """The file for ``gigabytes`` (made once; its name says its size)."""
    path = scale_path(gigabytes)
    if path.exists():
        return path
    source = prepare()["fp32"]
    with safe_open(source, framework="numpy") as f:
        names = list(f.keys())
        shapes = {n: f.get_slice(n).get_shape() for n in names}
        dtypes = {n: f.get_slice(n).get_dtype() for n in names}
    floats = [n for n in names if dtypes[n] == "F32"]
    one_copy = sum(int(np.prod(shapes[n])) * 4 for n in floats)
    copies = max(1, int(gigabytes * 1e9 // one_copy))
    header: dict[str, object] = {"__metadata__": {"format": "pt", "made_by": "benchmarks/scale_data.py"}}
    offset = 0
    plan = []
    for copy in range(copies):
        for n in floats:
            size = int(np.prod(shapes[n])) * 4
            name = f"copy{copy:03d}.{n}"
            header[name] = {"dtype": "F32", "shape": list(shapes[n]), "data_offsets": [offset, offset + size]}
            plan.append((copy, n))
            offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    partial = path.with_name(path.name + ".partial")
    rng = np.random.default_rng(SEED)
    with safe_open(source, framework="numpy") as f, open(partial, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for copy, n in plan:
            weights = f.get_tensor(n)
            if copy:
                weights = weights[rng.permutation(weights.shape[0])]
                noise = rng.standard_normal(weights.shape, dtype=np.float32) * np.float32(1e-3)
                weights = weights + weights * noise
            out.write(np.ascontiguousarray(weights, dtype="<f4").tobytes())
    partial.replace(path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=4.0)
    made = make_scale_checkpoint(parser.parse_args().gigabytes)
    print(f"{made}: {made.stat().st_size / 1e9:.2f} GB")
