"""Train the new layer of a multi-label run: one sigmoid per label, binary cross-entropy, NumPy.

The loop is layer.py's, with two changes.  Each label's score is its own
sigmoid, so an image can have any number of labels, and the loss is the binary
cross-entropy of every (image, label) pair.  Batches are label-balanced as the
classic ones are class-balanced: a label at random, then an image with that
label at random.  A step follows the loss summed over the labels and averaged
over the batch, so it moves each label's weights as far as a softmax step moves
its class's; the logged cross-entropy is the mean over images and labels.
"""
from __future__ import annotations

import logging
from datetime import datetime

import numpy as np

from ..cache.sets import SplitData
from ..config.settings import TrainSettings
from .layer import EvalPoint, TrainedLayer, _BestSoFar, _chunk_ends, optimizer_update, truncated_normal

log = logging.getLogger("retrain")

TRAINING_THRESHOLD = 0.5  # the thresholds are chosen after training; the log's figures use this one meanwhile


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-logits)) without overflow, in the dtype of ``logits``."""
    out = np.empty_like(logits)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    e = np.exp(logits[~positive])
    out[~positive] = e / (1.0 + e)
    return out


def binary_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean over images and labels of -t log(sigmoid(z)) - (1 - t) log(1 - sigmoid(z)), computed stably."""
    z = np.asarray(logits, np.float64)
    return float((np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))).mean())


def all_right(scores: np.ndarray, targets: np.ndarray, thresholds) -> float:
    """The share of images whose every label is right (score >= threshold exactly where the image has the label)."""
    return float(((scores >= thresholds) == (targets > 0.5)).all(axis=1).mean()) if len(targets) else float("nan")


def micro_f1(scores: np.ndarray, targets: np.ndarray, thresholds) -> float:
    said, truth = scores >= thresholds, targets > 0.5
    hits = float((said & truth).sum())
    wanted = float(said.sum() + truth.sum())
    return 2 * hits / wanted if wanted else float("nan")


def label_sampler(targets: np.ndarray, rng: np.random.Generator):
    """Return sample(n) -> row indices: a label uniformly at random, then a row that has it."""
    rows_of = [np.flatnonzero(targets[:, j] > 0.5) for j in range(targets.shape[1])]
    present = [rows for rows in rows_of if len(rows)]
    counts = np.array([len(rows) for rows in present])
    flat = np.concatenate(present)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def sample(n: int) -> np.ndarray:
        labels = rng.integers(0, len(present), size=n)
        within = (rng.random(n) * counts[labels]).astype(np.int64)
        return flat[starts[labels] + within]

    return sample


def train_multi_label_layer(train: SplitData, train_targets: np.ndarray, validation: SplitData,
                            validation_targets: np.ndarray, settings: TrainSettings, summaries=None, on_step=None,
                            store_every: int = 0) -> TrainedLayer:
    """Train a fully-connected sigmoid layer on ``train``; its history's accuracies are the share of images with
    every label right at TRAINING_THRESHOLD.  ``on_step`` as in layer.train_layer."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(settings.seed)
    dim, num_labels = train.x.shape[1], train_targets.shape[1]
    weights = truncated_normal(rng, (dim, num_labels), 0.001)
    biases = np.zeros(num_labels, np.float32)
    update = optimizer_update(settings, [weights, biases])
    sample_train = label_sampler(train_targets, rng)
    every_row = np.arange(len(train_targets))
    ends = set(_chunk_ends(settings.steps, [settings.eval_step_interval, store_every]))
    histogram_every = max(settings.eval_step_interval, settings.steps // 50)
    smoothing = np.float32(settings.label_smoothing)
    layer = TrainedLayer(weights=None, biases=None)
    best = _BestSoFar(settings.early_stopping_patience)
    since_callback = 0
    with threadpool_limits(limits=1, user_api="blas"):
        for step in range(settings.steps):
            rows = every_row if settings.batch_size == -1 else sample_train(settings.batch_size)
            x, t = train.x[rows].astype(np.float32, copy=False), train_targets[rows]
            inputs = x
            if settings.dropout > 0:
                keep = rng.random(x.shape, dtype=np.float32) >= settings.dropout
                inputs = np.where(keep, x / np.float32(1.0 - settings.dropout), np.float32(0))
            goal = t * (1 - smoothing) + smoothing / 2 if smoothing > 0 else t
            delta = (sigmoid(inputs @ weights + biases) - goal) / len(t)
            grad_w = (delta.T @ inputs).T
            if settings.weight_decay > 0:
                grad_w += np.float32(settings.weight_decay) * weights
            update([grad_w, delta.sum(axis=0)], step)
            since_callback += 1
            if step not in ends:
                continue
            if step % settings.eval_step_interval == 0 or step == settings.steps - 1:
                logits = x @ weights + biases
                loss, scores = binary_cross_entropy(logits, t), sigmoid(logits)
                accuracy = all_right(scores, t, TRAINING_THRESHOLD)
                now = datetime.now()
                log.info("%s: Step %d: Train accuracy = %.1f%% (every label right), micro F1 = %.1f%%", now, step,
                         accuracy * 100, micro_f1(scores, t, TRAINING_THRESHOLD) * 100)
                log.info("%s: Step %d: Cross entropy = %f", now, step, loss)
                val_accuracy, val_loss, n_val = None, None, 0
                if len(validation_targets):
                    if settings.validation_batch_size < 0:
                        vx, vt = validation.x, validation_targets
                    else:
                        pick = rng.integers(0, len(validation_targets), size=settings.validation_batch_size)
                        vx, vt = validation.x[pick], validation_targets[pick]
                    v_logits = vx.astype(np.float32, copy=False) @ weights + biases
                    val_loss, v_scores = binary_cross_entropy(v_logits, vt), sigmoid(v_logits)
                    val_accuracy, n_val = all_right(v_scores, vt, TRAINING_THRESHOLD), len(vt)
                    log.info("%s: Step %d: Validation accuracy = %.1f%% (every label right), micro F1 = %.1f%% "
                             "(N=%d)", now, step, val_accuracy * 100,
                             micro_f1(v_scores, vt, TRAINING_THRESHOLD) * 100, n_val)
                layer.history.append(EvalPoint(step, accuracy, loss, val_accuracy, n_val, val_loss))
                if summaries is not None:
                    summaries.scalars(step, accuracy, loss, val_accuracy, val_loss)
                    if step % histogram_every == 0 or step == settings.steps - 1:
                        summaries.histograms(step, weights, biases, logits)
                if best.patience and len(validation_targets):
                    full = validation.x.astype(np.float32, copy=False) @ weights + biases
                    if best.observe(step, binary_cross_entropy(full, validation_targets), weights, biases):
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
