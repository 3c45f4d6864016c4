"""Compressing a checkpoint does not keep it resident: peak memory stays near the
documented budget (interpreter + a batch + the largest tensor's planes and output),
far below the file's size. Measured in a child process (VmHWM), not timed; Linux only."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import numpy as np

TENSOR_MB = 8
TENSORS = 40  # 320 MB of tensors


def _write_checkpoint(path) -> None:
    rng = np.random.default_rng(0)
    block = (rng.standard_normal(TENSOR_MB * 1024 * 1024 // 4) * 0.02).astype("<f4")
    size = block.nbytes
    header = {f"t{i:03d}": {"dtype": "F32", "shape": [block.size], "data_offsets": [i * size, (i + 1) * size]}
              for i in range(TENSORS)}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(text)) + text)
        for i in range(TENSORS):
            block[i % block.size] += 1  # not identical, so nothing is deduplicated
            out.write(block.tobytes())


def _peak_rss_mb(code: str) -> float:
    """Peak resident memory (VmHWM) of a fresh interpreter running ``code``. Not
    ``ru_maxrss``: on Linux it survives exec, so the child would inherit pytest's peak."""
    script = code + "\nprint([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1])"
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1]) / 1024


def test_compress_and_decompress_do_not_hold_the_checkpoint(tmp_path):
    source, packed, restored = tmp_path / "big.safetensors", tmp_path / "big.tzip", tmp_path / "back.safetensors"
    _write_checkpoint(source)
    baseline = _peak_rss_mb("import tensorzip, numpy")
    compress = _peak_rss_mb(f"import tensorzip; tensorzip.compress_file({str(source)!r}, {str(packed)!r})")
    decompress = _peak_rss_mb(f"import tensorzip; tensorzip.decompress_file({str(packed)!r}, {str(restored)!r})")
    assert restored.read_bytes() == source.read_bytes()
    file_mb = source.stat().st_size / 2**20
    # Budget: the batch and a tensor's planes + output, a few times TENSOR_MB, plus slack
    # for allocator reuse; holding the file would add its whole 320 MB.
    for peak in (compress, decompress):
        assert peak - baseline < 12 * TENSOR_MB, (peak, baseline, file_mb)
