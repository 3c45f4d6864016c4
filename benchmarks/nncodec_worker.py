"""Runs inside the NNCodec environment (``benchmarks/.venv-nncodec``: NNCodec needs
numpy < 2 and torchvision, which tensorzip's environment does not have), called by
``run_lossy.py``: encodes a checkpoint's float tensors with NNCodec at each given QP
and saves, per QP, the bitstream size and the decoded tensors.

    python nncodec_worker.py WEIGHTS.npz OUT_DIR QP [QP ...]
"""

import json
import sys
from pathlib import Path

import numpy as np
from nncodec.nn import decode, encode


def main() -> None:
    weights, out_dir, qps = sys.argv[1], Path(sys.argv[2]), [int(q) for q in sys.argv[3:]]
    with np.load(weights) as data:
        params = {name: data[name].astype(np.float32) for name in data.files}
    sizes = {}
    for qp in qps:
        bitstream = encode(dict(params), args={"qp": qp, "use_dq": True, "verbose": False, "results": str(out_dir)})
        decoded = decode(bitstream, args={"verbose": False})
        np.savez(out_dir / f"decoded_qp{qp}.npz", **{k: np.asarray(v, np.float32) for k, v in decoded.items()})
        sizes[qp] = len(bitstream)
    (out_dir / "sizes.json").write_text(json.dumps(sizes))


if __name__ == "__main__":
    main()
