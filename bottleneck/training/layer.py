"""Train the new softmax layer on cached bottlenecks held in memory.

Batches are drawn class-balanced, as the classic script did (a class at
random, then an image of that class at random).  The layer is small enough
that NumPy with single-threaded BLAS trains it in seconds, faster than a
framework's per-step overhead would allow; fine-tuning, which runs convolutions,
uses TensorFlow instead (``fine_tune.py``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..cache.sets import SplitData
from ..config.settings import TrainSettings
from .numerics import cross_entropy, softmax

log = logging.getLogger("retrain")


@dataclass
class EvalPoint:
    step: int
    train_accuracy: float
    cross_entropy: float
    validation_accuracy: float | None
    validation_count: int
    validation_cross_entropy: float | None = None


@dataclass
class TrainedLayer:
    weights: np.ndarray  # [D, C]
    biases: np.ndarray  # [C]
    history: list[EvalPoint] = field(default_factory=list)
    best_step: int | None = None  # set when early stopping kept an earlier step's weights


def balanced_sampler(labels: np.ndarray, num_classes: int, rng: np.random.Generator):
    """Return sample(n) -> row indices: a class uniformly at random, then a row of that class."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=num_classes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    present = np.flatnonzero(counts)

    def sample(n: int) -> np.ndarray:
        classes = present[rng.integers(0, len(present), size=n)]
        within = (rng.random(n) * counts[classes]).astype(np.int64)
        return order[starts[classes] + within]

    return sample


def _chunk_ends(steps: int, every: list[int]) -> list[int]:
    """Steps after which the loop must come back to Python: evaluations, stores and the last step."""
    ends = {steps - 1}
    for interval in every:
        if interval > 0:
            ends.update(range(0, steps, interval))
    return sorted(ends)


def train_layer(
    train: SplitData,
    validation: SplitData,
    num_classes: int,
    settings: TrainSettings,
    summaries=None,
    on_step=None,
    store_every: int = 0,
) -> TrainedLayer:
    """Train a fully-connected softmax layer on ``train``; plain gradient descent by default.

    Why NumPy and not a TensorFlow graph: a step is two [100 x 2048] x [2048 x C]
    products, so per-op overhead is everything: it measured faster than one
    XLA-compiled loop (docs/performance.md), and TensorFlow's thread pools slow
    down far more on a busy machine than single-threaded BLAS does.
    ``on_step(step, steps_done, weights, biases)`` is called after every step
    that ends a chunk (evaluations and ``store_every``).
    """
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(settings.seed)
    dim = train.x.shape[1]
    weights = truncated_normal(rng, (dim, num_classes), 0.001)
    biases = np.zeros(num_classes, np.float32)
    update = optimizer_update(settings, [weights, biases])
    sample_train = balanced_sampler(train.y, num_classes, rng)
    every_row = np.arange(len(train.y))  # --train_batch_size -1: the whole training set, as the classic script read it
    ends = set(_chunk_ends(settings.steps, [settings.eval_step_interval, store_every]))
    histogram_every = max(settings.eval_step_interval, settings.steps // 50)
    layer = TrainedLayer(weights=None, biases=None)
    best = _BestSoFar(settings.early_stopping_patience)
    since_callback = 0
    with threadpool_limits(limits=1, user_api="blas"):  # tiny products: threads only add waiting
        for step in range(settings.steps):
            rows = every_row if settings.batch_size == -1 else sample_train(settings.batch_size)
            x, y = train.x[rows].astype(np.float32, copy=False), train.y[rows]
            inputs = x
            if settings.dropout > 0:
                keep = rng.random(x.shape, dtype=np.float32) >= settings.dropout
                inputs = np.where(keep, x / np.float32(1.0 - settings.dropout), np.float32(0))
            probabilities = softmax(inputs @ weights + biases)
            delta = (probabilities - _targets(y, num_classes, settings.label_smoothing)) / len(y)
            grad_w = (delta.T @ inputs).T  # the same product; BLAS runs this orientation twice as fast
            if settings.weight_decay > 0:
                grad_w += np.float32(settings.weight_decay) * weights
            update([grad_w, delta.sum(axis=0)], step)
            since_callback += 1
            if step not in ends:
                continue
            if step % settings.eval_step_interval == 0 or step == settings.steps - 1:
                # As the classic script did: accuracy and cross-entropy of this batch after its update.
                loss, accuracy, logits = _metrics(x, y, weights, biases)
                now = datetime.now()
                log.info("%s: Step %d: Train accuracy = %.1f%%", now, step, accuracy * 100)
                log.info("%s: Step %d: Cross entropy = %f", now, step, loss)
                val_accuracy, val_loss, n_val = None, None, 0
                if len(validation.y):
                    if settings.validation_batch_size < 0:
                        vx, vy = validation.x, validation.y
                    else:
                        pick = rng.integers(0, len(validation.y), size=settings.validation_batch_size)
                        vx, vy = validation.x[pick], validation.y[pick]
                    val_loss, val_accuracy, _ = _metrics(vx.astype(np.float32, copy=False), vy, weights, biases)
                    n_val = len(vy)
                    log.info("%s: Step %d: Validation accuracy = %.1f%% (N=%d)", now, step, val_accuracy * 100, n_val)
                layer.history.append(EvalPoint(step, accuracy, loss, val_accuracy, n_val, val_loss))
                if summaries is not None:
                    summaries.scalars(step, accuracy, loss, val_accuracy, val_loss)
                    if step % histogram_every == 0 or step == settings.steps - 1:
                        summaries.histograms(step, weights, biases, logits)
                # Stop on the whole validation set's cross-entropy: a random batch of it is too noisy.
                if best.patience and len(validation.y):
                    full_loss = _metrics(validation.x.astype(np.float32, copy=False), validation.y, weights, biases)[0]
                    if best.observe(step, full_loss, weights, biases):
                        log.info("Early stopping at step %d: validation cross-entropy has not improved since "
                                 "step %d.", step, best.step)
                        if on_step is not None:
                            on_step(step, since_callback, weights, biases)
                        break
            if on_step is not None:
                on_step(step, since_callback, weights, biases)
                since_callback = 0
    if best.weights is not None:
        log.info("Keeping the weights of step %d (best validation cross-entropy %.4f).", best.step, best.loss)
        layer.weights, layer.biases, layer.best_step = best.weights, best.biases, best.step
    else:
        layer.weights, layer.biases = weights, biases
    return layer


def truncated_normal(rng: np.random.Generator, shape, stddev: float) -> np.ndarray:
    """Normal values redrawn until within two standard deviations, like tf.truncated_normal."""
    values = rng.normal(0.0, stddev, size=shape)
    while (outside := np.abs(values) > 2 * stddev).any():
        values[outside] = rng.normal(0.0, stddev, size=int(outside.sum()))
    return values.astype(np.float32)


def _targets(y: np.ndarray, num_classes: int, smoothing: float) -> np.ndarray:
    targets = np.zeros((len(y), num_classes), np.float32)
    targets[np.arange(len(y)), y] = 1.0
    if smoothing > 0:
        targets = targets * np.float32(1.0 - smoothing) + np.float32(smoothing / num_classes)
    return targets


def _metrics(x, y, weights, biases):
    """Mean cross-entropy, accuracy and logits of a batch."""
    logits = x @ weights + biases
    accuracy = float((logits.argmax(axis=1) == y).mean())
    return cross_entropy(logits, y), accuracy, logits


class _BestSoFar:
    """Early stopping: remembers the weights with the lowest validation cross-entropy."""

    def __init__(self, patience: int):
        self.patience = patience
        self.loss, self.step, self.weights, self.biases, self.waited = float("inf"), None, None, None, 0

    def observe(self, step, loss, weights, biases) -> bool:
        """Record an evaluation; True when training should stop."""
        if loss < self.loss:
            self.loss, self.step, self.waited = loss, step, 0
            self.weights, self.biases = weights.copy(), biases.copy()
            return False
        self.waited += 1
        return self.waited >= self.patience


def optimizer_update(settings: TrainSettings, variables):
    """update(gradients, step), in place: plain SGD, momentum (0.9) or Adam."""
    lr = np.float32(settings.learning_rate)
    if settings.optimizer == "sgd":
        def update(gradients, _step):
            for v, g in zip(variables, gradients):
                v -= lr * g
        return update
    first = [np.zeros_like(v) for v in variables]
    if settings.optimizer == "momentum":
        def update(gradients, _step):
            for v, m, g in zip(variables, first, gradients):
                m *= np.float32(0.9)
                m += g
                v -= lr * m
        return update
    if settings.optimizer == "adam":
        second = [np.zeros_like(v) for v in variables]
        beta1, beta2, eps = 0.9, 0.999, 1e-7

        def update(gradients, step):
            t = step + 1
            scale = np.float32(lr * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t))
            for v, m, s2, g in zip(variables, first, second, gradients):
                m *= np.float32(beta1)
                m += np.float32(1 - beta1) * g
                s2 *= np.float32(beta2)
                s2 += np.float32(1 - beta2) * g * g
                v -= scale * m / (np.sqrt(s2) + np.float32(eps))
        return update
    raise ValueError(f"unknown optimizer {settings.optimizer!r}")

