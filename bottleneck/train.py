"""Train the new softmax layer on cached bottlenecks held in memory.

Batches are drawn class-balanced, as the classic script did (a class at
random, then an image of that class at random), and each step runs as one
compiled TensorFlow function, so 4,000 steps take seconds.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

log = logging.getLogger("retrain")


@dataclass
class SplitData:
    """Bottlenecks of one set, with the class index and source of each row."""

    x: np.ndarray  # [N, D], float32 (float16 for very large sets, to bound memory)
    y: np.ndarray  # [N] int32
    names: list[str]  # image paths, for reports


@dataclass
class EvalPoint:
    step: int
    train_accuracy: float
    cross_entropy: float
    validation_accuracy: float | None
    validation_count: int


@dataclass
class TrainedLayer:
    weights: np.ndarray  # [D, C]
    biases: np.ndarray  # [C]
    history: list[EvalPoint] = field(default_factory=list)


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 4000
    learning_rate: float = 0.01
    batch_size: int = 100
    eval_step_interval: int = 10
    validation_batch_size: int = 100
    seed: int | None = None


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


def train_layer(
    train: SplitData,
    validation: SplitData,
    num_classes: int,
    settings: TrainSettings,
    summaries=None,
    on_step=None,
) -> TrainedLayer:
    import tensorflow as tf

    rng = np.random.default_rng(settings.seed)
    if settings.seed is not None:
        tf.random.set_seed(settings.seed)
    dim = train.x.shape[1]
    weights = tf.Variable(
        tf.random.truncated_normal([dim, num_classes], stddev=0.001, seed=settings.seed), name="final_weights"
    )
    biases = tf.Variable(tf.zeros([num_classes]), name="final_biases")
    optimizer = tf.keras.optimizers.SGD(learning_rate=settings.learning_rate)
    spec = [tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.int32)]

    def metrics(x, y):
        logits = tf.matmul(x, weights) + biases
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        return loss, accuracy

    @tf.function(input_signature=spec)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss, _ = metrics(x, y)
        optimizer.apply_gradients(zip(tape.gradient(loss, [weights, biases]), [weights, biases]))

    evaluate = tf.function(metrics, input_signature=spec)

    sample_train = balanced_sampler(train.y, num_classes, rng)
    layer = TrainedLayer(weights=None, biases=None)
    for step in range(settings.steps):
        rows = sample_train(settings.batch_size)
        batch_x, batch_y = train.x[rows].astype(np.float32, copy=False), train.y[rows]
        train_step(batch_x, batch_y)
        is_last = step + 1 == settings.steps
        if step % settings.eval_step_interval == 0 or is_last:
            loss, accuracy = (float(v) for v in evaluate(batch_x, batch_y))
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
                val_loss, val_accuracy = (float(v) for v in evaluate(vx.astype(np.float32, copy=False), vy))
                n_val = len(vy)
                log.info("%s: Step %d: Validation accuracy = %.1f%% (N=%d)", now, step, val_accuracy * 100, n_val)
            layer.history.append(EvalPoint(step, accuracy, loss, val_accuracy, n_val))
            if summaries is not None:
                summaries.scalars(step, accuracy, loss, val_accuracy, val_loss)
        if on_step is not None:
            on_step(step, weights, biases)
    layer.weights, layer.biases = weights.numpy(), biases.numpy()
    return layer


def predict(layer: TrainedLayer, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Class probabilities for bottlenecks ``x``, in chunks to bound memory."""
    out = []
    for start in range(0, len(x), chunk):
        logits = x[start : start + chunk].astype(np.float32) @ layer.weights + layer.biases
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        out.append(p / p.sum(axis=1, keepdims=True))
    return np.concatenate(out) if out else np.zeros((0, layer.biases.shape[0]), np.float32)
