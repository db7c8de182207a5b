"""Fine-tuning the whole network as a phase of a run: its image sets, where its checkpoints live, what the log and
summary.json say about it, and the tuned network's scores for the test and validation images."""
from __future__ import annotations

import dataclasses
import logging
import math
import shutil
from pathlib import Path

import numpy as np

from ..cache.sets import set_entries
from ..config.settings import RetrainConfig
from ..console.progress import Progress
from ..data.distort import Distortion
from ..data.split import ClassSplit
from ..model.modules import FeatureModule
from ..model.precision import Precision
from ..model.runner import gpu_devices
from ..model.trainable import trainable_network, tuned_module
from .layer import TrainedLayer
from .network_tuning import (
    LabelledImages,
    NetworkTuneResult,
    choose_batch_size,
    classify_images,
    job_key,
    memory_available,
    tune_network,
)

log = logging.getLogger("retrain")

# The classic distortions, applied afresh at every epoch when the run names none of its own.
DEFAULT_DISTORTION = Distortion(flip_left_right=True, random_crop=10, random_scale=10, random_brightness=10)


def distortion_of(config: RetrainConfig) -> Distortion:
    """The run's distortion flags, or the classic four at 10 % when it gives none."""
    given = config.bottlenecks.distortion
    return given if given.active else DEFAULT_DISTORTION


def checkpoint_root(config: RetrainConfig) -> Path:
    """The folder whose sub-folders, one per fine-tuning job, hold the checkpoints: beside --checkpoint_path."""
    path = Path(config.export.checkpoint_path)
    return path.with_name(path.name + "_network")


def run(config: RetrainConfig, module: FeatureModule, precision: Precision, layer: TrainedLayer,
        splits: list[ClassSplit], digest_of, labels: list[str], test_pick: np.ndarray):
    """Fine-tune within a run; returns the result, the module to export and the test and validation logits."""
    settings = config.network
    sets = set_entries(splits, digest_of)

    def images(set_name: str, rows=None) -> LabelledImages:
        entries, y, paths = sets[set_name]
        rows = range(len(y)) if rows is None else rows
        return LabelledImages([Path(paths[i]) for i in rows], [entries[i].digest for i in rows],
                              np.asarray(y)[list(rows)].astype(np.int32))

    train, validation, test = images("training"), images("validation"), images("testing", list(test_pick))
    network = trainable_network(module, settings.blocks)
    compute_dtype = "bfloat16" if precision.name == "bfloat16" and network.bfloat16 else "float32"
    batch_size = choose_batch_size(settings.batch_size, module.height, module.width, memory_available())
    settings = dataclasses.replace(settings, batch_size=batch_size)
    distortion = distortion_of(config)
    devices = gpu_devices()
    devices = devices if len(devices) > 1 else []
    key = job_key(module.identity, labels, train, validation, settings, distortion, compute_dtype, config.training.seed)
    folder = checkpoint_root(config) / key
    parameters = sum(int(np.prod(v.shape)) for v in network.variables)
    what = "the whole network" if not settings.blocks else f"the top {settings.blocks} block(s) of the network"
    log.info("Fine-tuning %s (%s weights) with the new layer: up to %d epochs of %d training images "
             "in batches of %d, in %s%s; distortions: %s.", what, f"{parameters:,}", settings.epochs, len(train),
             batch_size,
             "bfloat16 with float32 weights" if compute_dtype == "bfloat16" else "float32",
             f", over {len(devices)} devices" if devices else "", _describe(distortion))
    steps = settings.epochs * max(1, math.ceil(len(train) / batch_size))
    with Progress(steps, "Fine-tuning the network", enabled=not config.run.quiet, interval_s=30) as bar:
        result = tune_network(network, layer, train, validation, len(labels), settings, distortion, module.height,
                              module.width, folder, compute_dtype, devices, config.training.seed,
                              on_step=bar.update)
    _report(result)
    _remove_other_jobs(folder)
    test_logits = classify_images(network, result.layer, test, module.height, module.width, batch_size, compute_dtype)
    validation_logits = result.validation_logits
    if validation_logits is None:
        validation_logits = classify_images(network, result.layer, validation, module.height, module.width,
                                            batch_size, compute_dtype)
    exported = tuned_module(module, network) if result.helped else module
    return result, exported, test_logits, validation_logits


def _describe(distortion: Distortion) -> str:
    parts = ["flip" if distortion.flip_left_right else ""]
    parts += [f"{name} {value:g}%" for name, value in (("crop", distortion.random_crop),
                                                       ("scale", distortion.random_scale),
                                                       ("brightness", distortion.random_brightness)) if value]
    return ", ".join(p for p in parts if p) or "none"


def _report(result: NetworkTuneResult) -> None:
    before = result.history[0]
    best = next(p for p in result.history if p.epoch == result.best_epoch)
    trained = [p for p in result.history if p.epoch > result.resumed_after]
    timing = (f"{result.seconds_per_epoch:.0f} s per epoch, {result.seconds:.0f} s in all" if trained
              else "nothing left to train")
    if before.validation_accuracy is None:
        log.info("Whole-network fine-tuning done (%s); no validation images to judge it by, so its last epoch is "
                 "kept.", timing)
    elif result.helped:
        log.info("Whole-network fine-tuning helped: validation accuracy %.1f%% -> %.1f%% (epoch %d kept; %s).",
                 before.validation_accuracy * 100, best.validation_accuracy * 100, result.best_epoch, timing)
    else:
        log.info("Whole-network fine-tuning did not raise the validation accuracy (%.1f%% before); keeping the network "
                 "as it was (%s).", before.validation_accuracy * 100, timing)


def _remove_other_jobs(folder: Path) -> None:
    """Checkpoints of other jobs: a finished run leaves only its own, which lets a repeat of it train nothing."""
    if not folder.parent.is_dir():
        return
    for other in folder.parent.iterdir():
        if other != folder and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)


def summary(result: NetworkTuneResult, settings) -> dict:
    """What summary.json says about fine-tuning the whole network."""
    return {
        "epochs": settings.epochs,
        "learning_rate": settings.learning_rate,
        "warmup": settings.warmup,
        "weight_decay": settings.weight_decay,
        "label_smoothing": settings.label_smoothing,
        "patience": settings.patience,
        "batch_size": result.batch_size,
        "blocks": settings.blocks,
        "compute_dtype": result.compute_dtype,
        "devices": result.devices,
        "helped": result.helped,
        "kept_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
        "resumed_after_epoch": result.resumed_after,
        "seconds": result.seconds,
        "seconds_per_epoch": result.seconds_per_epoch,
        "history": [dataclasses.asdict(p) for p in result.history],
    }
