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
    best_step: int | None = None  # set when early stopping kept an earlier step's weights


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 4000
    learning_rate: float = 0.01
    batch_size: int = 100
    eval_step_interval: int = 10
    validation_batch_size: int = 100
    seed: int | None = None
    optimizer: str = "sgd"  # sgd (the classic), momentum (0.9) or adam
    label_smoothing: float = 0.0
    dropout: float = 0.0  # on the bottleneck, while training only
    weight_decay: float = 0.0  # L2 on the weights, added to the loss
    early_stopping_patience: int = 0  # evaluations without a better validation cross-entropy; 0: off


OPTIMIZERS = ("sgd", "momentum", "adam")


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
    update = _optimizer(settings, [weights, biases])
    spec = [tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None], tf.int32)]

    def metrics(x, y):
        logits = tf.matmul(x, weights) + biases
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), y), tf.float32))
        return loss, accuracy, logits

    def training_loss(x, y, seed):
        if settings.dropout > 0:
            keep = tf.random.stateless_uniform(tf.shape(x), seed=seed) >= settings.dropout
            x = tf.where(keep, x / (1.0 - settings.dropout), 0.0)
        logits = tf.matmul(x, weights) + biases
        targets = tf.one_hot(y, num_classes)
        if settings.label_smoothing > 0:
            targets = targets * (1.0 - settings.label_smoothing) + settings.label_smoothing / num_classes
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=targets, logits=logits))
        if settings.weight_decay > 0:
            loss += settings.weight_decay * tf.nn.l2_loss(weights)
        return loss

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None, dim], tf.float32), tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([], tf.int64),
        ],
        jit_compile=True,  # XLA fuses the whole loop; without it each tiny op pays thread-pool overhead
    )
    def train_steps(xs, ys, first_step):
        for i in tf.range(tf.shape(xs)[0]):
            step = first_step + tf.cast(i, tf.int64)
            with tf.GradientTape() as tape:
                loss = training_loss(xs[i], ys[i], tf.stack([seed_base, step]))
            update(tape.gradient(loss, [weights, biases]), step)
        # The classic script reported accuracy and cross-entropy on the last batch after its update.
        return metrics(xs[-1], ys[-1])

    evaluate = tf.function(lambda x, y: metrics(x, y)[:2], input_signature=spec)

    seed_base = tf.constant(settings.seed or 0, tf.int64)
    sample_train = balanced_sampler(train.y, num_classes, rng)
    layer = TrainedLayer(weights=None, biases=None)
    best = _BestSoFar(settings.early_stopping_patience)
    histogram_every = max(settings.eval_step_interval, settings.steps // 50)
    first = 0
    for last in _chunk_ends(settings.steps, [settings.eval_step_interval, store_every]):
        rows = sample_train(settings.batch_size * (last - first + 1)).reshape(last - first + 1, settings.batch_size)
        loss, accuracy, logits = train_steps(
            train.x[rows].astype(np.float32, copy=False), train.y[rows], np.int64(first)
        )
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
            # Stop on the whole validation set's cross-entropy: a random batch of it is too noisy to judge by.
            if best.patience and len(validation.y) and best.observe(
                step, float(evaluate(validation.x.astype(np.float32, copy=False), validation.y)[0]), weights, biases
            ):
                log.info("Early stopping at step %d: validation cross-entropy has not improved since step %d.",
                         step, best.step)
                if on_step is not None:
                    on_step(step, len(rows), weights, biases)
                break
            if summaries is not None:
                summaries.scalars(step, accuracy, loss, val_accuracy, val_loss)
                if step % histogram_every == 0 or step == settings.steps - 1:
                    summaries.histograms(step, weights, biases, logits)
        if on_step is not None:
            on_step(step, len(rows), weights, biases)
    if best.weights is not None:
        log.info("Keeping the weights of step %d (best validation cross-entropy %.4f).", best.step, best.loss)
        layer.weights, layer.biases, layer.best_step = best.weights, best.biases, best.step
    else:
        layer.weights, layer.biases = weights.numpy(), biases.numpy()
    return layer


class _BestSoFar:
    """Early stopping: remembers the weights with the lowest validation cross-entropy."""

    def __init__(self, patience: int):
        self.patience = patience
        self.loss, self.step, self.weights, self.biases, self.waited = float("inf"), None, None, None, 0

    def observe(self, step, loss, weights, biases) -> bool:
        """Record an evaluation; True when training should stop."""
        if loss < self.loss:
            self.loss, self.step, self.waited = loss, step, 0
            self.weights, self.biases = weights.numpy(), biases.numpy()
            return False
        self.waited += 1
        return self.waited >= self.patience


def _optimizer(settings: TrainSettings, variables):
    """update(gradients, step) for plain SGD, momentum or Adam, written out so XLA compiles it whole."""
    import tensorflow as tf

    lr = settings.learning_rate
    if settings.optimizer == "sgd":
        def update(gradients, _step):
            for v, g in zip(variables, gradients):
                v.assign_sub(lr * g)
        return update
    slots = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
    if settings.optimizer == "momentum":
        def update(gradients, _step):
            for v, m, g in zip(variables, slots, gradients):
                m.assign(0.9 * m + g)
                v.assign_sub(lr * m)
        return update
    if settings.optimizer == "adam":
        second = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        beta1, beta2, eps = 0.9, 0.999, 1e-7

        def update(gradients, step):
            t = tf.cast(step + 1, tf.float32)
            scale = lr * tf.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
            for v, m, s2, g in zip(variables, slots, second, gradients):
                m.assign(beta1 * m + (1 - beta1) * g)
                s2.assign(beta2 * s2 + (1 - beta2) * tf.square(g))
                v.assign_sub(scale * m / (tf.sqrt(s2) + eps))
        return update
    raise ValueError(f"unknown optimizer {settings.optimizer!r}")


def predict(layer: TrainedLayer, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Class probabilities for bottlenecks ``x``, in chunks to bound memory."""
    out = []
    for start in range(0, len(x), chunk):
        logits = x[start : start + chunk].astype(np.float32) @ layer.weights + layer.biases
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        out.append(p / p.sum(axis=1, keepdims=True))
    return np.concatenate(out) if out else np.zeros((0, layer.biases.shape[0]), np.float32)
