"""One rank of a real 2-process torch.distributed group (gloo, CPU), for tests/test_dcp.py:
``python dcp_worker.py RANK WORLD PORT save|save-plain|load PATH``. The state is the same on every run
(seeded): a model and its AdamW state (replicated), a DTensor sharded across the ranks, and
plain values. ``save`` writes it with TensorzipWriter (``save-plain``: DCP's own writer);
``load`` reads it back into zeroed tensors with TensorzipReader and exits non-zero unless every tensor is identical."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Shard, distribute_tensor


def expected_state(steps: int = 3) -> dict:
    """The full (unsharded) state every rank holds a part of, after ``steps`` training steps."""
    torch.manual_seed(19)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(steps):
        model(torch.randn(8, 64)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "embedding": torch.randn(512, 32).to(torch.bfloat16), "step": steps}


def flat(state: dict, prefix: str = "") -> dict:
    found = {}
    for key, value in state.items():
        if isinstance(value, dict):
            found.update(flat(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def main() -> None:
    rank, world, port, mode, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    base = sys.argv[6] if len(sys.argv) > 6 else None  # save: the checkpoint before (then one step later)
    steps = 4 if base is not None or mode == "load-later" else 3
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from tensorzip.dcp import TensorzipReader, TensorzipWriter

    mesh = init_device_mesh("cpu", (world,))
    state = expected_state(steps)
    state["embedding"] = distribute_tensor(state["embedding"], mesh, [Shard(0)])  # each rank holds its rows
    if mode == "save":
        dcp.save(state, storage_writer=TensorzipWriter(path, threads=1, base=base))
    elif mode == "save-plain":  # DCP's own writer: what `tensorzip compress FOLDER` converts
        dcp.save(state, storage_writer=dcp.FileSystemWriter(path))
    else:
        target = {"model": {k: torch.zeros_like(v) for k, v in state["model"].items()},
                  "embedding": distribute_tensor(torch.zeros(512, 32, dtype=torch.bfloat16), mesh, [Shard(0)]),
                  "step": 0}
        dcp.load(target, storage_reader=TensorzipReader(path))
        full = target["embedding"].full_tensor()
        ok = target["step"] == steps and torch.equal(full.view(torch.int16), state["embedding"].full_tensor().view(
            torch.int16)) and all(torch.equal(target["model"][k], v) for k, v in state["model"].items())
        if not ok:
            sys.exit(3)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Every check passed. Skip interpreter finalization: under load, gloo's worker threads can
    # still hold Python objects then and abort the process ("terminate called without an active
    # exception", pytorch/pytorch#179291), a teardown race of torch's, not a result of this test.
    sys.stdout.flush()
    os._exit(0)
