"""Writes the golden file of a DCP rank file compressed by ``tensorzip compress FOLDER``
(a ``torch-zip`` source record marked ``"container": "dcp"``, issue 19; run once, when it was
added; kept to prove every later tensorzip restores it byte for byte).

``__0_0.distcp``: DCP's own writer (``FileSystemWriter``, one process) on a small training
state (a linear layer's weights, AdamW's moments, a step count, a nested dict of plain values),
with a few bytes appended after the last item; ``__0_0.tzip``: ``tz.compress_file`` of it
(the folder beside it holds the ``.metadata`` that marks it a rank file).

    python tests/golden/dcp_rank_file_v1/make_golden.py
"""

import shutil
import tempfile
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

import tensorzip as tz

HERE = Path(__file__).parent

if __name__ == "__main__":
    if (HERE / "__0_0.tzip").exists():
        raise SystemExit("golden files are never rewritten; a format change adds a new folder")
    torch.manual_seed(20261203)
    layer = torch.nn.Linear(24, 16)
    optimizer = torch.optim.AdamW(layer.parameters())
    layer(torch.randn(4, 24)).pow(2).mean().backward()
    optimizer.step()
    state = {"model": layer.state_dict(), "optimizer": optimizer.state_dict(), "step": 1,
             "extra": {"name": "golden", "lrs": [0.1, 0.01]}}
    with tempfile.TemporaryDirectory() as scratch:
        dcp.save(state, storage_writer=dcp.FileSystemWriter(scratch), no_dist=True)
        with open(Path(scratch) / "__0_0.distcp", "ab") as handle:
            handle.write(b"bytes after the last item")
        shutil.copy(Path(scratch) / "__0_0.distcp", HERE / "__0_0.distcp")
        tz.compress_file(Path(scratch) / "__0_0.distcp", HERE / "__0_0.tzip")
