"""Fine-tuning: train the top blocks of the built-in Inception-v3 together with the new layer.

It starts from the layer already trained on cached bottlenecks, so it only
has to improve a working classifier.  The network below the tuned blocks stays
frozen, and its output (the activations at the cut, e.g. mixed_9's 8x8x2048
grid for one block) is computed once per image and distorted copy and cached
beside the bottlenecks, as float16.  A fine-tuning step therefore runs only
the tuned blocks, forwards and backwards, several times faster than a forward
pass through the whole network.  Batches are
read from the cache one at a time, so the memory needed does not grow with
the data set.  Batch-norm was folded into each convolution when the model was
converted, so it is in inference mode by construction.  TensorFlow puts the
steps on a GPU when it sees one.

Validation accuracy and cross-entropy are measured on the whole validation set
before the first step and at every evaluation; the parameters with the lowest
validation cross-entropy are kept, which are the starting ones when
fine-tuning did not help.

Running the tuned network lives in ``tuned_network.py``; fine-tuning as a
phase of a run, with its log lines and summary, in ``fine_tune_run.py``.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..config.settings import FineTuneSettings, TrainSettings
from ..model import inception_v3
from .layer import TrainedLayer, balanced_sampler
from .numerics import cross_entropy
from .tuned_network import ActivationSet, infer_set

log = logging.getLogger("retrain")

EVALUATIONS = 20  # validation passes spread over a fine-tuning run


@dataclass
class FineTunePoint:
    step: int  # -1: before fine-tuning
    train_accuracy: float | None
    cross_entropy: float | None
    validation_accuracy: float | None
    validation_cross_entropy: float | None


@dataclass
class FineTuneResult:
    weights: dict[str, np.ndarray]  # the whole network's arrays, with the tuned blocks' new values
    layer: TrainedLayer
    before: FineTunePoint  # validation before fine-tuning
    best: FineTunePoint  # the evaluation whose parameters were kept (== before when it did not help)
    history: list[FineTunePoint] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def helped(self) -> bool:
        return self.best.step >= 0


def fine_tune(
    weights: dict[str, np.ndarray],
    layer: TrainedLayer,
    train: ActivationSet,
    validation: ActivationSet,
    num_classes: int,
    settings: FineTuneSettings,
    new_layer: TrainSettings,
    top_block: str,
    on_step=None,
    on_evaluation=None,
) -> FineTuneResult:
    """Train the top ``settings.blocks`` blocks (ending with ``top_block``) and the new layer together, with Adam.

    The new layer's regularisation (dropout, label smoothing) and seed come from ``new_layer``.

    ``on_step()`` is called after every step, ``on_evaluation(point)`` after each validation pass.
    """
    import tensorflow as tf

    started = time.perf_counter()
    if new_layer.seed is not None:
        tf.random.set_seed(new_layer.seed)
    rng = np.random.default_rng(new_layer.seed)
    names = inception_v3.tuned_parameter_names(weights, settings.blocks, top_block)
    variables = {name: tf.Variable(weights[name], name=name.replace("/", "_")) for name in names}
    head_w = tf.Variable(layer.weights, name="final_weights")
    head_b = tf.Variable(layer.biases, name="final_biases")
    trainable = [*variables.values(), head_w, head_b]
    _lower, upper = inception_v3.split_network(weights, settings.blocks, variables, top_block)
    optimizer = tf.keras.optimizers.Adam(settings.learning_rate)
    spec = tf.TensorSpec([None, *train.shape], tf.float32)

    def logits_of(activations, training):
        features = upper(activations)
        if training and new_layer.dropout > 0:
            features = tf.nn.dropout(features, rate=new_layer.dropout)
        return tf.matmul(features, head_w) + head_b

    @tf.function(input_signature=[spec, tf.TensorSpec([None], tf.int32)])
    def train_step(activations, labels):
        targets = tf.one_hot(labels, num_classes)
        if new_layer.label_smoothing > 0:
            targets = targets * (1.0 - new_layer.label_smoothing) + new_layer.label_smoothing / num_classes
        with tf.GradientTape() as tape:
            logits = logits_of(activations, training=True)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
        optimizer.apply_gradients(zip(tape.gradient(loss, trainable), trainable))
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels)
        return loss, tf.reduce_mean(tf.cast(correct, tf.float32))

    @tf.function(input_signature=[spec])
    def infer(activations):
        return logits_of(activations, training=False)

    def evaluate(step, train_accuracy=None, train_loss=None) -> FineTunePoint:
        point = FineTunePoint(step, train_accuracy, train_loss, None, None)
        if len(validation.y):
            logits = infer_set(infer, validation, settings.batch_size)
            point.validation_accuracy = float((logits.argmax(axis=1) == validation.y).mean())
            point.validation_cross_entropy = cross_entropy(logits, validation.y)
        return point

    def snapshot():
        return {name: v.numpy() for name, v in variables.items()}, head_w.numpy(), head_b.numpy()

    before = evaluate(-1)
    _log_point(before, "before fine-tuning")
    history = [before]
    best, kept = before, None
    if on_evaluation is not None:
        on_evaluation(before)
    sample = balanced_sampler(train.y, num_classes, rng)
    interval = max(1, settings.steps // EVALUATIONS)
    for step in range(settings.steps):
        rows = sample(settings.batch_size)
        loss, accuracy = train_step(train.rows(rows), train.y[rows])
        if on_step is not None:
            on_step()
        if step % interval != interval - 1 and step != settings.steps - 1:
            continue
        point = evaluate(step, float(accuracy), float(loss))
        _log_point(point, f"step {step}")
        history.append(point)
        if on_evaluation is not None:
            on_evaluation(point)
        if point.validation_cross_entropy is None or point.validation_cross_entropy < best.validation_cross_entropy:
            best, kept = point, snapshot()
    if not len(validation.y):  # nothing to judge by: keep the last parameters
        best, kept = history[-1], snapshot()

    tuned = dict(weights)
    final = TrainedLayer(weights=layer.weights, biases=layer.biases, history=layer.history, best_step=layer.best_step)
    if kept is not None:
        tuned_values, final.weights, final.biases = kept
        tuned.update(tuned_values)
    return FineTuneResult(tuned, final, before, best, history, time.perf_counter() - started)


def _log_point(point: FineTunePoint, when: str) -> None:
    now = datetime.now()
    if point.train_accuracy is not None:
        log.info("%s: Fine-tune %s: Train accuracy = %.1f%%, Cross entropy = %f", now, when,
                 point.train_accuracy * 100, point.cross_entropy)
    if point.validation_accuracy is not None:
        log.info("%s: Fine-tune %s: Validation accuracy = %.1f%%, cross entropy = %f", now, when,
                 point.validation_accuracy * 100, point.validation_cross_entropy)
