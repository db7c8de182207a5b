"""The new layer's arithmetic in NumPy: its logits, softmax, log-softmax, cross-entropy and class probabilities.

Training, calibration, fine-tuning's validation and the data checks all compute these; this is the one copy.
There are two softmaxes on purpose, and they agree only to rounding, not bit for bit:

* ``softmax``: the exponentials over their sum, in the logits' own precision (float32 for the layer). Training
  steps, the data checks' folds and ``layer_probabilities`` use it.
* ``softmax_float64``: the exponential of the log-softmax, in float64, with an optional temperature. Calibration
  fits and scores with it.

Each caller keeps the one it always used, so that no trained weight, score or report figure changes.
"""
from __future__ import annotations

import numpy as np

CHUNK = 4096  # rows per matrix product when scoring many bottlenecks, to bound memory


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax as exponentials over their sum, in the dtype of ``logits``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, in the dtype of ``logits``."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_float64(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) in float64, as the exponential of the log-softmax."""
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature))


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy of ``logits`` against class indices ``y``."""
    return float(-log_softmax(logits)[np.arange(len(y)), y].mean())


def layer_logits(layer, x: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """x W + b of the new ``layer`` (anything with ``weights`` [D, C] and ``biases`` [C]) for bottlenecks ``x``."""
    parts = [x[s:s + chunk].astype(np.float32) @ layer.weights + layer.biases for s in range(0, len(x), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, layer.biases.shape[0]), np.float32)


def layer_probabilities(layer, x: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """The new ``layer``'s class probabilities (``softmax``, float32) for bottlenecks ``x``."""
    parts = [softmax(x[s:s + chunk].astype(np.float32) @ layer.weights + layer.biases)
             for s in range(0, len(x), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, layer.biases.shape[0]), np.float32)
