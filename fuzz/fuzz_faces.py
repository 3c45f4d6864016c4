"""Fuzz every face that reads a .tzip file, not only the container reader: bytes -> a file
-> ``info``, ``contents`` (``tensorzip ls``), ``verify_file``, ``decompress_file`` (to a
file and to memory), ``salvage_file``, ``load_file``, safetensors' API (``tensorzip.hf.safetensors``:
``load_file``, ``safe_open`` and every tensor's lazy slice, as transformers takes them), the layer readers (KV caches,
embedding collections, lossy weights: whichever the file declares) and the numcodecs
codec's ``decode``.

A finding: any exception other than a TensorzipError subclass, a sanitizer report, or an
input that takes over 5 s (libFuzzer's ``-timeout=5`` in run.sh, "every reader given any
file under 1 MB ends in under 5 s"). Memory is bounded by ``-rss_limit_mb`` and by
``ReadLimits``-sized checks: a file declaring more than ``DECODE_BUDGET`` must be refused
or streamed, never allocated.

The mutator is fuzz_reader.py's (structure-aware, from the format spec), with values aimed
at the faces: references (the file naming itself as base: it is written as
``input.tzip``), JSON integers past Python's 4,300-digit limit, lone surrogates, huge
declared sizes. Seeds: fuzz/corpus/faces (the golden layer files and a folder archive
with kept files, so mutations start from every kind of file tensorzip writes).

    fuzz/run.sh 600 faces
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np  # noqa: F401  (imported before instrumentation)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_reader  # noqa: E402  (its mutator; importing it instruments tensorzip once)
import tzip_image  # noqa: E402

with atheris.instrument_imports(include=["tensorzip"]):
    import tensorzip as tz
    from tensorzip import embeddings, kv, lossy
    from tensorzip.container import ReadLimits, TzipReader
    from tensorzip.container.kinds import Kind, identify
    from tensorzip.errors import TensorzipError
    from tensorzip.hf import safetensors as tzst
    from tensorzip.integrations.numcodecs_codec import Tensorzip as NumcodecsTensorzip

# Declared bytes above which a face must refuse or stream: the in-memory faces get a limit
# of this size, so nothing allocates more whatever the file declares.
DECODE_BUDGET = 64 << 20
LIMITS = ReadLimits(max_header_bytes=1 << 20, max_memory_bytes=DECODE_BUDGET)
SCRATCH = Path(tempfile.mkdtemp(prefix="tzfuzz-faces-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))

fuzz_reader.STRINGS.extend(["input.tzip", "__tzfuzz_bigint__", "tensorzip.kv", "tensorzip.embeddings",
                            "tensorzip.lossy", "files", "1_Pooling/config.json", "../../etc/passwd"])
fuzz_reader.KEYS.extend(["files", "features", "required", "path", "size", "folder", "index", "text"])
BIGINT = b'"__tzfuzz_bigint__"'


def _faces(path: Path) -> None:
    """Every face on the file at ``path``; only TensorzipError may come out."""
    out = SCRATCH / "out"
    for call in (
        lambda: tz.info(path),
        lambda: tz.contents(path),
        lambda: tz.verify_file(path),
        lambda: tz.decompress_file(path, out / "restored.safetensors"),
        lambda: tz.decompress_file(path, io.BytesIO()),
        lambda: tz.salvage_file(path, out / "salvaged.safetensors", overwrite=True),
        lambda: tz.load_file(path, limits=LIMITS),
        lambda: tzst.load_file(path, framework="np", limits=LIMITS),
        lambda: _lazy(path),
        lambda: _layer(path),
        lambda: NumcodecsTensorzip().decode(path.read_bytes()),
    ):
        try:
            call()
        except TensorzipError:
            pass
        finally:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()

def _lazy(path: Path) -> None:
    """safetensors' API over the file: every tensor by get_slice, as transformers takes them."""
    with tzst.safe_open(path, framework="np", limits=LIMITS) as f:
        f.metadata()
        names = f.keys()
        for name in names:
            part = f.get_slice(name)
            part.get_shape(), part.get_dtype()
            part[...]


def _layer(path: Path) -> None:
    kind = identify(path).kind
    if kind is Kind.KV_CACHE:
        kv.describe(path.read_bytes())
        kv.load_file(path)
    elif kind is Kind.EMBEDDINGS:
        embeddings.open(path).decode()
    elif kind is Kind.LOSSY_WEIGHTS:
        lossy.decompress_file(path, SCRATCH / "out" / "lossy.safetensors")


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris' name)
    data = data.replace(BIGINT, b"1" * 5000)
    (SCRATCH / "out").mkdir(exist_ok=True)
    path = SCRATCH / "input.tzip"
    for image in (data, tzip_image.with_fixed_checksums(data)):
        try:  # a file whose header declares more than the budget must be refused or streamed
            with TzipReader(image, limits=ReadLimits(max_header_bytes=1 << 20)) as reader:
                declared = sum(e.nbytes for e in reader.header.tensors.values())
                declared += sum(f.size for f in reader.header.files.values())
            if declared > 16 * DECODE_BUDGET:
                continue  # a streaming face would spend seconds writing it: not a finding per se
        except TensorzipError:
            pass
        path.write_bytes(image)
        _faces(path)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput, custom_mutator=fuzz_reader.mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
