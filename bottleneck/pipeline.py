"""One retraining run, start to finish: walk -> split -> bottlenecks -> train -> evaluate -> export -> report.

``retrain`` is the table of contents; each phase's detail lives in its own module.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from . import bottlenecks, calibration, data_checks, fine_tune
from .cache import BottleneckCache
from .errors import UserError
from .evaluate import check_accuracy_gate, final_test, pick_test_images
from .export import check_final_tensor_name, export_all, intermediate_saver
from .modules import load_module
from .network import with_precision
from .notes import bounded
from .precision import network_precision
from .progress import Progress
from .report import ReportData, write_report
from .report_html import PageData, Predictions
from .sets import load_sets
from .settings import ExportSettings, RetrainConfig
from .split import SETS, split_classes
from .tensorboard import Summaries
from .train import train_layer
from .walk import ImageClass, list_images

log = logging.getLogger("retrain")


@dataclass
class RunResult:
    labels: list[str]
    layer: object  # train.TrainedLayer
    test_accuracy: float | None
    test_count: int
    counts: dict[str, dict[str, int]]  # label -> set -> images
    skipped: list
    misclassified: list[tuple[str, str, str]]  # path, true label, predicted label
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict | None = None  # what the report's summary.json holds


def retrain(config: RetrainConfig) -> RunResult:
    started, timings = time.perf_counter(), {}
    phase = _phase_clock(timings)
    inputs, quiet = config.input, config.run.quiet

    with phase("walk"):
        classes = find_classes(config)
        labels = [c.label for c in classes]
        splits = split_classes(classes, inputs.validation_percentage, inputs.testing_percentage, log.warning)
        log.info("Found %d images in %d classes under %s.", sum(len(c.images) for c in classes), len(labels),
                 inputs.image_dir)
    with phase("load_module"):
        module = load_module(config.bottlenecks.tfhub_module, config.bottlenecks.model_dir, log=log.info,
                             top_block=config.bottlenecks.bottleneck_layer)
        if config.export.final_tensor_name != ExportSettings.final_tensor_name:  # the default is known to be free
            check_final_tensor_name(module, config.export.final_tensor_name)
        # Says which precision runs and why; vectors of one precision are never mixed with another's.
        module = with_precision(module, network_precision(config.bottlenecks.precision))
    with contextlib.ExitStack() as open_caches:  # the activations stay open through fine-tuning
        activations = None
        if config.fine_tune.enabled:
            activations = fine_tune.activation_cache(config.bottlenecks.bottleneck_dir, module, config.fine_tune.blocks,
                                                     log.warning)
            open_caches.callback(activations.close)
        with phase("bottlenecks"), contextlib.closing(BottleneckCache(
                config.bottlenecks.bottleneck_dir, module.identity, module.bottleneck_size, log=log.warning)) as cache:
            images = bottlenecks.ensure(config.bottlenecks, module, cache, classes, splits, activations,
                                        config.fine_tune.blocks, show_progress=not quiet)
            splits = resplit_readable(classes, splits, images.skipped, config)
            data = load_sets(cache, splits, images.digest_of, module.bottleneck_size,
                             config.bottlenecks.distortion, config.bottlenecks.copies)
            # The data checks look at every image as it is, never at a distorted copy.
            plain = load_sets(cache, splits, images.digest_of, module.bottleneck_size) \
                if config.bottlenecks.copies else data
        counts = check_usable(splits, images.skipped, config.run.strict)

        with phase("training"):
            layer = train_new_layer(config, module, labels, data)
        test, test_rows = pick_test_images(data["testing"], config.training.test_batch_size, config.training.seed)
        tuned = None
        if activations is not None:
            with phase("fine_tune"):
                tuned, module, test_p, validation_p = fine_tune.run(config, module, layer, activations, splits,
                                                                    images.digest_of, len(labels), test_rows)
                layer = tuned.layer
            test_logits, validation_logits = map(calibration.logits_from_probabilities, (test_p, validation_p))
        else:
            test_logits, validation_logits = (calibration.layer_logits(layer, s.x) for s in (test, data["validation"]))

    scored = calibration.score_run(not config.export.no_temperature_scaling, validation_logits,
                                   data["validation"].y, test_logits, test.y)
    log.info("Confidence: %s.", scored.calibration.note)
    result = final_test(test, scored.test_probabilities, labels, inputs.testing_percentage,
                        config.report.print_misclassified_test_images)
    findings = None
    if not config.report.skip_data_checks:
        with phase("data_checks"):
            findings = data_checks.check_run(plain, images.digest_of, labels, config.training.seed, config.run.strict)
    check_accuracy_gate(result.accuracy, config.run.assert_accuracy_at_least)
    layer = calibration.scaled_layer(layer, scored.calibration.temperature)  # softmax(logits / T) in every export
    with phase("export"):
        export_all(config.export, module, layer, labels, [im.path for sp in splits for im in sp.training])
    timings["total"] = time.perf_counter() - started
    summary = write_report(config.report_dir, ReportData(
        labels=labels, history=layer.history, test_true=result.true, test_predicted=result.predicted,
        test_names=result.names, counts=counts, skipped=images.skipped, settings=config.flags(), module=module,
        timings=timings, test_accuracy=result.accuracy,
        validation_accuracy=tuned.best.validation_accuracy if tuned else None,
        fine_tune=fine_tune.summary(config.fine_tune, tuned) if tuned else None,
        calibration=scored.summary, findings=findings,
        page=PageData(Predictions(test.names, test.y, scored.test_probabilities),
                      Predictions(data["validation"].names, data["validation"].y, scored.validation_probabilities),
                      findings),
    ))
    log.info("Wrote the report to %s", config.report_dir)
    return RunResult(labels, layer, result.accuracy, len(result.true), counts, images.skipped,
                     result.misclassified, timings, summary)


def _phase_clock(timings: dict[str, float]):
    @contextlib.contextmanager
    def phase(name: str):
        started = time.perf_counter()
        yield
        timings[name] = time.perf_counter() - started

    return phase


def find_classes(config: RetrainConfig) -> list[ImageClass]:
    listing = list_images(config.input.image_dir)
    for warning in bounded(listing.warnings, "warnings about the class folders"):
        log.warning(warning)
    if listing.ignored_summary():
        log.warning(listing.ignored_summary())
    return listing.classes


def resplit_readable(classes: list[ImageClass], splits, skipped, config: RetrainConfig):
    """Split again over the readable images when some were skipped, so small classes keep their guarantee."""
    if not skipped:
        return splits
    skipped_paths = {s.path for s in skipped}
    readable = [ImageClass(c.label, c.folder, [im for im in c.images if im.path not in skipped_paths])
                for c in classes]
    return split_classes(readable, config.input.validation_percentage, config.input.testing_percentage, log.warning)


def check_usable(splits, skipped, strict: bool) -> dict[str, dict[str, int]]:
    """Images per class and set; refuses a run that --strict forbids or that left a class without training images."""
    if skipped:
        if strict:
            first = skipped[0]
            raise UserError(
                f"{len(skipped)} image(s) could not be read and --strict is set, e.g. {first.path}: {first.reason}."
            )
        log.warning("Skipped %d unreadable image(s); see the lines above for each path and reason.", len(skipped))
    counts = {sp.label: {s: len(sp.of(s)) for s in SETS} for sp in splits}
    empty = [label for label, c in counts.items() if c["training"] == 0]
    if empty:
        raise UserError(f"No usable training images left for class(es): {', '.join(empty)}.")
    return counts


def train_new_layer(config: RetrainConfig, module, labels: list[str], data):
    """Train the new softmax layer, with progress, TensorBoard summaries and intermediate graphs."""
    save_intermediate = intermediate_saver(config.export, module, labels)
    summaries = Summaries(config.report.summaries_dir)
    summaries.settings({k: str(v) for k, v in config.flags().items()})
    steps = config.training.steps
    with Progress(steps, "Training", enabled=not config.run.quiet, interval_s=30) as bar:

        def on_step(step, steps_done, weights, biases):
            bar.update(steps_done)
            if save_intermediate:
                save_intermediate(step, weights, biases)

        try:
            return train_layer(data["training"], data["validation"], len(labels), config.training, summaries,
                               on_step, store_every=config.export.intermediate_store_frequency)
        finally:
            summaries.close()

