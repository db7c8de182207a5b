"""Fine-tuning as a phase of a run: its sets of cached activations, the tuning, what the log and summary.json
say about it, and the tuned network's scores for the test and validation images."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from ..cache.sets import set_entries
from ..cache.store import BottleneckCache
from ..config.settings import FineTuneSettings, RetrainConfig
from ..console.progress import Progress
from ..data.split import ClassSplit
from ..extraction.activations import activation_shape
from ..model import inception_v3
from ..model.modules import FeatureModule
from .fine_tune import FineTuneResult, fine_tune
from .layer import TrainedLayer
from .tuned_network import ActivationSet, classify, tuned_module

log = logging.getLogger("retrain")


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
