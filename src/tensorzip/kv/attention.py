"""What KV-cache error means to a model: the error of the attention output.

softmax(q k^T / sqrt(d)) v per layer, batch and head (bidirectional, as in the
encoder the benchmark data comes from; a causal mask would only drop terms).
"""

from __future__ import annotations

import numpy as np


def attention_output(q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
    """[..., tokens_q, d] attention output for [..., tokens, d] queries, keys and values."""
    q32, k32, v32 = (np.asarray(a, dtype=np.float32) for a in (q, k, v))
    logits = q32 @ np.swapaxes(k32, -1, -2) / np.sqrt(np.float32(q32.shape[-1]))
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    weights /= weights.sum(axis=-1, keepdims=True)
    return weights @ v32


def output_errors(q: np.ndarray, k: np.ndarray, v: np.ndarray, k_hat: np.ndarray,
                  v_hat: np.ndarray) -> dict[str, object]:
    """Relative Frobenius error of the attention output (overall and per layer) and the
    worst cosine between exact and approximate output rows. Arrays: [layers, ...]."""
    exact = attention_output(q, k, v)
    approx = attention_output(q, k_hat, v_hat)
    diff = exact - approx
    per_layer = [float(np.linalg.norm(diff[i]) / max(np.linalg.norm(exact[i]), 1e-30)) for i in range(len(exact))]
    norms = np.linalg.norm(exact, axis=-1) * np.linalg.norm(approx, axis=-1)
    cosine = np.einsum("...i,...i->...", exact, approx) / np.maximum(norms, 1e-30)
    return {"relative_error": float(np.linalg.norm(diff) / max(np.linalg.norm(exact), 1e-30)),
            "relative_error_per_layer": per_layer, "worst_cosine": float(cosine.min(initial=1.0))}
