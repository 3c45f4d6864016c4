"""Write the golden files of the ``torch-zip`` source record (run once; the outputs are committed).

    python tests/golden/torch_zip_v1/make_golden.py

Issue 19: a torch.save zip of any structure restores byte for byte. Never edited or
regenerated: the script only writes what is missing.

- ``training.pt``: a small training checkpoint (model, AdamW state with int keys, scheduler,
  epoch, a tuple, RNG state); ``training.tzip``: ``compress_file`` of it.
- ``flat.pt``: a plain state dict with a tied weight, a transpose and a slice;
  ``flat.tzip``: ``compress_file`` of it (it also decompresses to .safetensors).
"""

from __future__ import annotations

from pathlib import Path

import torch

import tensorzip as tz

HERE = Path(__file__).resolve().parent


def training() -> dict:
    torch.manual_seed(20261202)
    model = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.ReLU(), torch.nn.Linear(24, 6))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)
    for _ in range(4):
        model(torch.randn(8, 12)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": 4, "pair": (1, 2.5), "rng": torch.get_rng_state()}


def flat() -> dict:
    torch.manual_seed(7)
    weight = torch.randn(20, 10)
    return {"weight": weight, "tied": weight, "weight.T": weight.t(), "rows": weight[2:5],
            "bf16": torch.randn(6, 4).to(torch.bfloat16), "steps": torch.arange(5)}


def main() -> None:
    for name, make in (("training", training), ("flat", flat)):
        if not (HERE / f"{name}.pt").exists():
            torch.save(make(), HERE / f"{name}.pt")
        if not (HERE / f"{name}.tzip").exists():
            tz.compress_file(HERE / f"{name}.pt", HERE / f"{name}.tzip")


if __name__ == "__main__":
    main()
