"""Writes the golden file of the "reference" feature (run once, when it was added; kept to
prove every later tensorzip still reads it).

mixed.tzip: ``model.w`` (BF16) and ``master.w`` (FP32, coded against ``model.w`` widened),
``master.v`` (FP32) and ``model.v`` (FP16, coded against ``master.v`` rounded), each with
NaNs, infinities, signed zeros, subnormals and rounding ties. expected.npz: every tensor's
bytes, as uint8.

    python tests/golden/tensor_reference_v1/make_golden.py
"""

from pathlib import Path

import numpy as np

import tensorzip as tz
from tensorzip.codecs.residual import convert
from tensorzip.dtypes import by_name

HERE = Path(__file__).parent


def master(shape, seed):
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    bits = values.reshape(-1).view(np.uint32)
    bits[3:15] = [0x7FC00001, 0xFFA00000, 0x7F800000, 0xFF800000, 0x00000000, 0x80000000, 0x00000001,
                  0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x477FF000, 0xC77FF000]
    return values


if __name__ == "__main__":
    if (HERE / "mixed.tzip").exists():
        raise SystemExit("golden files are never rewritten; a format change adds a new folder")
    w, v = master((96, 64), 1), master((80, 64), 2)
    tensors = {"model.w": convert(w.reshape(-1), by_name("bfloat16")).reshape(w.shape), "master.w": w,
               "master.v": v, "model.v": convert(v.reshape(-1), by_name("float16")).reshape(v.shape)}
    tz.save_file(tensors, HERE / "mixed.tzip")
    as_bytes = {k: np.ascontiguousarray(a).reshape(-1).view(np.uint8) for k, a in tensors.items()}
    np.savez(HERE / "expected.npz", **as_bytes)
