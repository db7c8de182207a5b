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
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..cache.sets import set_entries
from ..cache.store import BottleneckCache, Entry
from ..config.settings import FineTuneSettings, RetrainConfig, TrainSettings
from ..console.progress import Progress
from ..data.split import ClassSplit
from ..extraction.activations import activation_shape
from ..model import inception_v3
from ..model.modules import FeatureModule
from .layer import TrainedLayer, balanced_sampler, cross_entropy

log = logging.getLogger("retrain")

EVALUATIONS = 20  # validation passes spread over a fine-tuning run


@dataclass
class ActivationSet:
    """One set's cached activations at the cut, read from the cache a batch at a time."""

    cache: BottleneckCache
    entries: list[Entry]
    y: np.ndarray  # [N] class indices
    shape: tuple[int, int, int]  # of one image's activations

    def rows(self, indices) -> np.ndarray:
        flat = self.cache.fetch([self.entries[i] for i in indices])
        return flat.reshape((len(flat),) + self.shape)


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
            logits = predict_logits(infer, validation, settings.batch_size)
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


def predict_logits(infer, data: ActivationSet, batch_size: int) -> np.ndarray:
    chunks = [infer(data.rows(range(start, min(start + batch_size, len(data.y))))).numpy()
              for start in range(0, len(data.y), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def classify(weights: dict[str, np.ndarray], blocks: int, layer: TrainedLayer, data: ActivationSet,
             top: str = inception_v3.CLASSIC_TOP_BLOCK, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for cached activations through (fine-tuned) top blocks and layer."""
    import tensorflow as tf

    _lower, upper = inception_v3.split_network(weights, blocks, top=top)

    @tf.function(input_signature=[tf.TensorSpec([None, *data.shape], tf.float32)], autograph=False)
    def infer(activations):
        return tf.nn.softmax(tf.matmul(upper(activations), layer.weights) + layer.biases)

    return predict_logits(infer, data, batch_size)


def tuned_module(module: FeatureModule, weights: dict[str, np.ndarray], blocks: int) -> FeatureModule:
    """The feature module whose top blocks carry the fine-tuned weights, for every export."""
    digest = hashlib.sha256()
    for name in inception_v3.tuned_parameter_names(weights, blocks, module.top_block):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    return dataclasses.replace(
        module,
        identity=f"{module.identity}|fine-tuned:{digest.hexdigest()[:16]}",
        features=inception_v3.build_feature_fn(weights, module.top_block),
        weights=weights,
        classic_cache_suffixes=(),
    )


def _log_point(point: FineTunePoint, when: str) -> None:
    now = datetime.now()
    if point.train_accuracy is not None:
        log.info("%s: Fine-tune %s: Train accuracy = %.1f%%, Cross entropy = %f", now, when,
                 point.train_accuracy * 100, point.cross_entropy)
    if point.validation_accuracy is not None:
        log.info("%s: Fine-tune %s: Validation accuracy = %.1f%%, cross entropy = %f", now, when,
                 point.validation_accuracy * 100, point.validation_cross_entropy)


def run(config: RetrainConfig, module: FeatureModule, layer: TrainedLayer, activations: BottleneckCache,
        splits: list[ClassSplit], digest_of, num_classes: int, test_pick: np.ndarray):
    """Fine-tune within a run; returns the result, the module to export and the test and validation images'
    probabilities."""
    blocks, training = config.fine_tune.blocks, config.training
    sets = set_entries(splits, digest_of, config.bottlenecks.distortion, config.bottlenecks.copies)
    shape = activation_shape(module.weights, blocks, module.top_block)
    train_set, validation_set = (ActivationSet(activations, sets[s][0], sets[s][1], shape)
                                 for s in ("training", "validation"))
    test_entries, test_y, _paths = sets["testing"]
    test_set = ActivationSet(activations, [test_entries[i] for i in test_pick], test_y[test_pick], shape)
    settings = config.fine_tune
    log.info("Fine-tuning %s with the new layer: %d steps of %d images.",
             " and ".join(inception_v3.tuned_blocks_below(module.top_block, blocks)), settings.steps,
             settings.batch_size)
    if training.dropout == 0 and training.label_smoothing == 0:
        log.warning("Fine-tuning without --dropout or --label_smoothing seldom helps: the new layer already fits "
                    "the training images, leaving almost no gradient (docs/fine-tuning.md).")
    with Progress(settings.steps, "Fine-tuning", enabled=not config.run.quiet, interval_s=30) as bar:
        result = fine_tune(module.weights, layer, train_set, validation_set, num_classes, settings, training,
                           module.top_block, on_step=bar.update)
    before, best = result.before, result.best
    if before.validation_accuracy is None:
        log.info("Fine-tuning done in %.0f s; no validation images to judge it by, so its last step is kept.",
                 result.seconds)
    elif result.helped:
        log.info("Fine-tuning helped: validation accuracy %.1f%% -> %.1f%%, cross entropy %.4f -> %.4f "
                 "(step %d kept, %.0f s).", before.validation_accuracy * 100, best.validation_accuracy * 100,
                 before.validation_cross_entropy, best.validation_cross_entropy, best.step, result.seconds)
    else:
        log.info("Fine-tuning did not lower the validation cross-entropy (%.4f before); keeping the network as it "
                 "was (validation accuracy %.1f%%).", before.validation_cross_entropy, before.validation_accuracy * 100)
    probabilities = classify(result.weights, blocks, result.layer, test_set, module.top_block)
    validation = classify(result.weights, blocks, result.layer, validation_set, module.top_block)
    exported = tuned_module(module, result.weights, blocks) if result.helped else module
    return result, exported, probabilities, validation


def summary(settings: FineTuneSettings, tuned: FineTuneResult) -> dict:
    """What summary.json says about a fine-tuning run."""
    return {
        "blocks": settings.blocks,
        "steps": settings.steps,
        "learning_rate": settings.learning_rate,
        "batch_size": settings.batch_size,
        "helped": tuned.helped,
        "kept_step": tuned.best.step if tuned.helped else None,
        "validation_accuracy_before": tuned.before.validation_accuracy,
        "validation_accuracy_after": tuned.best.validation_accuracy,
        "validation_cross_entropy_before": tuned.before.validation_cross_entropy,
        "validation_cross_entropy_after": tuned.best.validation_cross_entropy,
        "seconds": tuned.seconds,
        "history": [dataclasses.asdict(point) for point in tuned.history],
    }
