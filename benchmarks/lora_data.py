"""Make real LoRA adapters of all-MiniLM-L6-v2 for the small-file benchmark (issue 22).

A LoRA adapter is a small file of many small tensors: per adapted linear layer, ``lora_A``
(rank x in, Kaiming-uniform at start) and ``lora_B`` (out x rank, zero at start), trained
while the base stays frozen. Synthetic noise has none of that structure (B grows from zero
along a few directions, A keeps most of its random start), so the adapters are trained here,
with the model, text and recipe of ``finetune_data.py`` (the CPython documentation as pairs,
in-batch negatives, AdamW), on CPU:

* ranks 8 and 16, on every attention projection and both feed-forward layers of the six
  layers (peft's names: ``base_model.model.encoder.layer.N.attention.self.query.lora_A.weight``),
  alpha = 2 x rank, learning rate 1e-4, ``STEPS`` steps, seeded;
* saved as peft saves them (``adapter_model.safetensors``, FP32) and cast to BF16 and FP16
  (round to nearest), beside ``adapter_config.json``.

Outputs land in the git-ignored ``benchmarks/.data/lora/r{8,16}-{fp32,bf16,fp16}/``. A run that
finds every file present does nothing; files are written under temporary names and renamed.

    python benchmarks/lora_data.py     # about 1-2 minutes on two CPU cores
"""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from atomic import replace_atomically, write_bytes_atomically
from data import DATA_DIR, _wheel, prepare
from finetune_data import BATCH, SCALE, SEQ_LEN, WHEEL_MODEL_DIR, _encode, batches, load_model, make_pairs

OUT_DIR = DATA_DIR / "lora"
RANKS = (8, 16)
STEPS = 60
LR = 1e-4
SEED = 4321
TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
           "intermediate.dense", "output.dense")
CASTS = {"fp32": np.float32, "bf16": ml_dtypes.bfloat16, "fp16": np.float16}


class LoraLinear(nn.Module):
    """``base(x) + (alpha / r) * B(A(x))`` with the base frozen, as peft's LoRA layer."""

    def __init__(self, base: nn.Linear, rank: int):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=5 ** 0.5)
        nn.init.zeros_(self.lora_B.weight)
        self.scale = 2.0  # alpha / r with alpha = 2 r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scale


def _adapt(model: nn.Module, rank: int) -> dict[str, LoraLinear]:
    adapted = {}
    for index, layer in enumerate(model.encoder.layer):
        for target in TARGETS:
            *path, leaf = target.split(".")
            parent = layer
            for part in path:
                parent = getattr(parent, part)
            lora = LoraLinear(getattr(parent, leaf), rank)
            setattr(parent, leaf, lora)
            adapted[f"base_model.model.encoder.layer.{index}.{target}"] = lora
    return adapted


def _paths() -> dict[str, Path]:
    return {f"r{r}-{tag}": OUT_DIR / f"r{r}-{tag}" / "adapter_model.safetensors" for r in RANKS for tag in CASTS}


def prepare_lora() -> dict[str, Path]:
    """Make sure every adapter exists; return their paths by key ("r8-bf16", ...)."""
    paths = _paths()
    if all(p.exists() for p in paths.values()):
        return paths
    with zipfile.ZipFile(_wheel()) as zf:
        cfg = json.loads(zf.read(WHEEL_MODEL_DIR + "config.json"))
        tok = Tokenizer.from_str(zf.read(WHEEL_MODEL_DIR + "tokenizer.json").decode())
    tok.enable_truncation(max_length=SEQ_LEN)
    tok.enable_padding(pad_id=cfg["pad_token_id"], pad_token="[PAD]")
    base = load_file(prepare()["fp32"])
    pairs = make_pairs()
    for rank in RANKS:
        random.seed(SEED)
        np.random.seed(SEED)
        torch.manual_seed(SEED + rank)
        torch.set_num_threads(2)
        model = load_model(cfg, base)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        adapted = _adapt(model, rank)
        trained = [p for lora in adapted.values() for p in (lora.lora_A.weight, lora.lora_B.weight)]
        for parameter in trained:
            parameter.requires_grad_(True)
        model.train()
        opt = torch.optim.AdamW(trained, lr=LR)
        stream = batches(pairs, random.Random(SEED))
        labels = torch.arange(BATCH)
        for step in range(1, STEPS + 1):
            batch = next(stream)
            a = model(*_encode(tok, [p[1] for p in batch]))
            b = model(*_encode(tok, [p[2] for p in batch]))
            loss = F.cross_entropy(F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * SCALE, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 20 == 0:
                print(f"rank {rank} step {step} loss {loss.item():.4f}", flush=True)
        tensors = {}
        for name, lora in adapted.items():
            tensors[f"{name}.lora_A.weight"] = lora.lora_A.weight.detach().numpy().copy()
            tensors[f"{name}.lora_B.weight"] = lora.lora_B.weight.detach().numpy().copy()
        config = {"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": sorted(
            {t.split(".")[-1] if t != "attention.output.dense" else "dense" for t in TARGETS}),
            "base_model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2", "steps": STEPS, "seed": SEED}
        for tag, dtype in CASTS.items():
            path = paths[f"r{rank}-{tag}"]
            path.parent.mkdir(parents=True, exist_ok=True)
            cast = {n: t.astype(dtype) for n, t in tensors.items()}
            replace_atomically(path, lambda tmp, cast=cast: save_file(cast, tmp, metadata={"format": "pt"}))
            write_bytes_atomically(path.with_name("adapter_config.json"), json.dumps(config, indent=1).encode())
    return paths


if __name__ == "__main__":
    for key, path in prepare_lora().items():
        print(f"{key}: {path} ({path.stat().st_size:,} bytes)")
