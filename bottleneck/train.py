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
    validation_cross_entropy: float | None = None


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
    """Train a fully-connected softmax layer on ``train`` with plain gradient descent.

    The batches of all steps between two evaluations are gathered in NumPy and
    run by one compiled call that loops in the graph, so Python and the
    TensorFlow call overhead are paid once per evaluation, not once per step.
    ``on_step(last_step, steps_done, weights, biases)`` is called after each
    such chunk; ``store_every`` adds chunk ends for intermediate graphs.
    """
    import tensorflow as tf

    rng = np.random.default_rng(settings.seed)
    if settings.seed is not None:
        tf.random.set_seed(settings.seed)
    dim = train.x.shape[1]
    weights = tf.Variable(
        tf.random.truncated_normal([dim, num_classes], stddev=0.001, seed=settings.seed), name="final_weights"
    )
    biases = tf.Variable(tf.zeros([num_classes]), name="final_biases")
    learning_rate = tf.constant(settings.learning_rate, tf.float32)
    spec = [tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.int32)]

    def metrics(x, y):
        logits = tf.matmul(x, weights) + biases
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        return loss, accuracy, logits

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, dim], tf.float32), tf.TensorSpec([None, None], tf.int32)],
        jit_compile=True,  # XLA fuses the whole loop; without it each tiny op pays thread-pool overhead
    )
    def train_steps(xs, ys):
        for i in tf.range(tf.shape(xs)[0]):
            with tf.GradientTape() as tape:
                loss, _, _ = metrics(xs[i], ys[i])
            grad_w, grad_b = tape.gradient(loss, [weights, biases])
            weights.assign_sub(learning_rate * grad_w)
            biases.assign_sub(learning_rate * grad_b)
        # The classic script reported accuracy and cross-entropy on the last batch after its update.
        return metrics(xs[-1], ys[-1])

    evaluate = tf.function(lambda x, y: metrics(x, y)[:2], input_signature=spec)

    sample_train = balanced_sampler(train.y, num_classes, rng)
    layer = TrainedLayer(weights=None, biases=None)
    histogram_every = max(settings.eval_step_interval, settings.steps // 50)
    first = 0
    for last in _chunk_ends(settings.steps, [settings.eval_step_interval, store_every]):
        rows = sample_train(settings.batch_size * (last - first + 1)).reshape(last - first + 1, settings.batch_size)
        loss, accuracy, logits = train_steps(train.x[rows].astype(np.float32, copy=False), train.y[rows])
        first = last + 1
        step = last
        if step % settings.eval_step_interval == 0 or step == settings.steps - 1:
            loss, accuracy = float(loss), float(accuracy)
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
            layer.history.append(EvalPoint(step, accuracy, loss, val_accuracy, n_val, val_loss))
            if summaries is not None:
                summaries.scalars(step, accuracy, loss, val_accuracy, val_loss)
                if step % histogram_every == 0 or step == settings.steps - 1:
                    summaries.histograms(step, weights, biases, logits)
        if on_step is not None:
            on_step(step, len(rows), weights, biases)
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
