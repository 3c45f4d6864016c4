"""Real activations of all-MiniLM-L6-v2 for the error-bounded benchmark (issue 21).

The model (the PyPI wheel's folder, loaded with ``transformers.AutoModel``) runs on passages
of the CPython documentation (``pydoc_data.topics``, installed with Python), 128 tokens each:

- ``hidden-L.npy``: the hidden states after layer L (0: the embeddings; 3; 6: the output),
  float32 (passages, 128, 384);
- ``attention-L.npy``: the attention probabilities of layer L (a few passages), float32
  (passages, heads, 128, 128);
- ``gradients.npy``: the gradients of every encoder weight matrix after one step of the
  sentence-transformers objective (in-batch negatives over neighbouring chunks), float32,
  concatenated flat and reshaped to (-1, 384);
- ``exp-avg.npy``: AdamW's first moment (``exp_avg``) of every encoder weight matrix at the
  last step of the checkpoint benchmark's MiniLM run (``checkpoint_data.py``, FP32, 200 steps;
  made first if missing), concatenated and reshaped the same way.

Outputs land in the git-ignored ``benchmarks/.data/activations/``; a run that finds them does
nothing. Seeded; about half a minute on two CPU cores (the checkpoint run, if it has not run:
several minutes).

    python benchmarks/activation_data.py
"""

from __future__ import annotations

import pydoc_data.topics
from pathlib import Path

import numpy as np

from data import DATA_DIR

OUT_DIR = DATA_DIR / "activations"
PASSAGES = 192
ATTENTION_PASSAGES = 12
TOKENS = 128
LAYERS = (0, 3, 6)
NAMES = [f"hidden-{layer}" for layer in LAYERS] + ["attention-2", "gradients", "exp-avg"]


def _texts(count: int) -> list[str]:
    words: list[str] = []
    for topic in sorted(pydoc_data.topics.topics):
        words.extend(pydoc_data.topics.topics[topic].split())
    step = 200
    return [" ".join(words[i : i + step]) for i in range(0, count * step, step)]


def prepare_exp_avg(path: Path) -> None:
    """AdamW's exp_avg of the encoder's weight matrices at the checkpoint run's last step."""
    import torch

    from checkpoint_data import STEPS, _train_minilm, checkpoint_paths

    checkpoints = checkpoint_paths()
    if not checkpoints[("fp32", STEPS)].exists():
        _train_minilm(checkpoints)  # the MiniLM run only (the GPT-2 one is the checkpoint benchmark's)
    state = torch.load(checkpoints[("fp32", STEPS)], weights_only=True, map_location="cpu")
    # The optimizer's state is indexed by its parameter groups' order, not by name: the encoder's
    # matrices are the ones of these shapes (the embedding tables are the other 2-D ones).
    shapes = {(384, 384), (1536, 384), (384, 1536)}
    moments = [entry["exp_avg"] for _, entry in sorted(state["optimizer"]["state"].items())
               if tuple(entry["exp_avg"].shape) in shapes]
    np.save(path, torch.cat([m.reshape(-1) for m in moments]).numpy().astype(np.float32).reshape(-1, 384))


def prepare_activations() -> dict[str, Path]:
    paths = {name: OUT_DIR / f"{name}.npy" for name in NAMES}
    if not paths["exp-avg"].exists():
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        prepare_exp_avg(paths["exp-avg"])
    if all(p.exists() for p in paths.values()):
        return paths
    import torch
    import transformers

    from tensorzip import sample_data

    torch.manual_seed(0)
    torch.set_num_threads(2)
    folder = sample_data.fetch_minilm_folder()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager")
    model.eval()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    texts = _texts(PASSAGES)
    batch = tokenizer(texts, max_length=TOKENS, truncation=True, padding="max_length", return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        for layer in LAYERS:
            np.save(paths[f"hidden-{layer}"], out.hidden_states[layer].numpy().astype(np.float32))
        small = {k: v[:ATTENTION_PASSAGES] for k, v in batch.items()}
        attention = model(**small, output_attentions=True).attentions[2]
        np.save(paths["attention-2"], attention.numpy().astype(np.float32))
    model.train()
    anchors = tokenizer(texts[0:32:2], max_length=64, truncation=True, padding=True, return_tensors="pt")
    positives = tokenizer(texts[1:32:2], max_length=64, truncation=True, padding=True, return_tensors="pt")

    def embed(encoded):
        hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    scores = embed(anchors) @ embed(positives).T * 20.0
    torch.nn.functional.cross_entropy(scores, torch.arange(scores.shape[0])).backward()
    grads = [p.grad.numpy().reshape(-1) for n, p in model.named_parameters()
             if p.grad is not None and n.startswith("encoder.") and p.ndim == 2]
    np.save(paths["gradients"], np.concatenate(grads).astype(np.float32).reshape(-1, 384))
    return paths


if __name__ == "__main__":
    for name, path in prepare_activations().items():
        array = np.load(path)
        print(f"{name}: {array.shape} {array.dtype}, rms {float(np.sqrt(np.mean(array.astype(np.float64)**2))):.4g}")
