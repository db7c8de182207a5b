"""One retraining run, start to finish: walk -> bottlenecks -> sets -> train -> evaluate -> check -> export -> report.

``retrain`` is the table of contents: one call per phase, each timed; each phase's detail lives in its own
sub-package, and the phases below only hand the run's state from one to the next.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .cache.sets import load_sets, load_trained_and_plain
from .cache.store import BottleneckCache
from .config.checks import output_locations
from .config.settings import ExportSettings, RetrainConfig, with_flags
from .console.notes import bounded
from .console.progress import Progress
from .data.labels_csv import read_labels_csv
from .data.multi_label import image_splits, split_by_image
from .data.split import SETS, split_classes
from .data.walk import ImageClass, list_images
from .data_checks import findings as data_checks
from .data_checks.label_errors import assign_folds
from .errors import UserError
from .export.outputs import check_final_tensor_name, export_all, intermediate_saver
from .extraction import bottlenecks
from .extraction.activations import activation_cache
from .model.modules import BUILTIN_MODULE, load_module
from .model.precision import network_precision
from .model.runner import with_precision
from .report.page import PageData, Predictions
from .report.summary import ReportData, write_report
from .report.views import ViewInputs
from .review.kept import leave_out_kept
from .review.record import log_class_changes, write_record
from .training import calibration, fine_tune_run, model_selection, multi_label_run, network_tuning_run, numerics
from .training.evaluate import check_accuracy_gate, final_test, pick_test_images
from .training.layer import train_layer
from .training.tensorboard import Summaries

if TYPE_CHECKING:
    from .cache.sets import SplitData
    from .config.settings import BottleneckSettings
    from .data.split import ClassSplit
    from .data_checks.findings import Findings
    from .extraction.batches import Skipped
    from .extraction.bottlenecks import CachedImages
    from .model.modules import FeatureModule
    from .model.precision import Precision
    from .training.calibration import Scored
    from .training.evaluate import FinalTest
    from .training.fine_tune import FineTuneResult
    from .training.layer import TrainedLayer
    from .training.model_selection import Selection
    from .training.multi_label_run import MultiLabelTest
    from .training.network_tuning import NetworkTuneResult

log = logging.getLogger("retrain")


@dataclass
class RunResult:
    labels: list[str]
    layer: TrainedLayer
    test_accuracy: float | None
    test_count: int
    counts: dict[str, dict[str, int]]  # label -> set -> images
    skipped: list[Skipped]
    misclassified: list[tuple[str, str, str]]  # path, true label, predicted label
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict | None = None  # what the report's summary.json holds


@dataclass
class Run:
    """What one run knows, filled in phase by phase (each field names the phase that fills it)."""

    config: RetrainConfig
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds
    started: float = field(default_factory=time.perf_counter)
    classes: list[ImageClass] = field(default_factory=list)  # walk
    labels: list[str] = field(default_factory=list)  # walk
    splits: list[ClassSplit] = field(default_factory=list)  # walk; split again in sets when images were skipped
    module: FeatureModule | None = None  # load_network: the feature extractor at the run's precision
    precision: Precision | None = None  # load_network: the arithmetic the network runs in
    cache: BottleneckCache | None = None  # bottlenecks: open until the sets are read
    activations: BottleneckCache | None = None  # bottlenecks, with --fine_tune: activations at the cut
    images: CachedImages | None = None  # bottlenecks: content digests and skipped images
    data: dict[str, SplitData] = field(default_factory=dict)  # sets: as trained on (distorted copies included)
    plain: dict[str, SplitData] = field(default_factory=dict)  # sets: every image as it is
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # sets: label -> set -> images
    layer: TrainedLayer | None = None  # training (replaced by fine-tuning's, then by the calibrated one)
    tuned: FineTuneResult | None = None  # fine_tune
    tuned_network: NetworkTuneResult | None = None  # fine_tune_network
    test: SplitData | None = None  # sets: the test images of the final accuracy (--test_batch_size of them)
    test_rows: np.ndarray | None = None  # sets: their rows in data["testing"]
    logits: tuple[np.ndarray, np.ndarray] = ()  # fine_tune or evaluate: (test, validation) logits
    scored: Scored | None = None  # evaluate: temperature and calibrated scores
    result: FinalTest | None = None  # evaluate
    findings: Findings | None = None  # data_checks, unless --skip_data_checks
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # sets, with --multi_label: set -> [rows, labels]
    multi: MultiLabelTest | None = None  # evaluate, with --multi_label: thresholds and per-label figures
    selection: Selection | None = None  # select, with --preset auto: the table and the setting chosen

    @property
    def multi_label(self) -> bool:
        return self.config.input.multi_label

    @contextlib.contextmanager
    def phase(self, name: str):
        started = time.perf_counter()
        yield
        self.timings[name] = time.perf_counter() - started


def retrain(config: RetrainConfig) -> RunResult:
    run = Run(config)
    with run.phase("walk"):
        walk_and_split(run)
    with run.phase("load_module"):
        load_network(run)
    with contextlib.ExitStack() as open_caches:  # fine-tuning reads its activations after the bottleneck phase
        with run.phase("bottlenecks"):
            cache_bottlenecks(run, open_caches)
        with run.phase("sets"):
            assemble_sets(run)
        if config.selection is not None:
            with run.phase("select"):
                select_setting(run, open_caches)
        with run.phase("training"):
            train_new_layer(run)
        if config.fine_tune.enabled:
            with run.phase("fine_tune"):
                fine_tune_top_blocks(run)
    if config.network.enabled:
        with run.phase("fine_tune_network"):
            fine_tune_whole_network(run)
    with run.phase("evaluate"):
        evaluate(run)
    if not config.report.skip_data_checks:
        with run.phase("data_checks"):
            check_data(run)
    check_accuracy_gate(run.result.accuracy, config.run.assert_accuracy_at_least)
    with run.phase("export"):
        export(run)
    return report(run)


# ------------------------------------------------------------------------------------------ the phases


def walk_and_split(run: Run) -> None:
    inputs = run.config.input
    run.classes = find_classes(run.config)
    run.labels = [c.label for c in run.classes]
    split = split_by_image if run.multi_label else split_classes  # an image with several labels: one set for all
    run.splits = split(run.classes, inputs.validation_percentage, inputs.testing_percentage, log.warning)
    log.info("Found %d images in %d classes under %s.", len({im.path for c in run.classes for im in c.images}),
             len(run.labels), inputs.labels_csv or inputs.image_dir)


def load_network(run: Run) -> None:
    settings, export_settings = run.config.bottlenecks, run.config.export
    module = load_module(settings.tfhub_module, settings.model_dir, log=log.info, top_block=settings.bottleneck_layer)
    if export_settings.final_tensor_name != ExportSettings.final_tensor_name:  # the default is known to be free
        check_final_tensor_name(module, export_settings.final_tensor_name)
    # Says which precision runs and why; vectors of one precision are never mixed with another's.
    run.precision = network_precision(settings.precision)
    run.module = with_precision(module, run.precision)


def cache_bottlenecks(run: Run, open_caches: contextlib.ExitStack) -> None:
    """Every image's bottleneck in the cache: looked up, imported or computed."""
    config, settings = run.config, cached_settings(run.config)
    if config.fine_tune.enabled:
        run.activations = activation_cache(settings.bottleneck_dir, run.module, config.fine_tune.blocks, log.warning)
        open_caches.callback(run.activations.close)
    run.cache = BottleneckCache(settings.bottleneck_dir, run.module.identity, run.module.bottleneck_size,
                                log=log.warning)
    open_caches.callback(run.cache.close)
    run.images = bottlenecks.ensure(settings, run.module, run.cache, run.classes, run.splits, run.activations,
                                    config.fine_tune.blocks, show_progress=not config.run.quiet)
    if not run.multi_label:  # an image of several labels has no one class to change
        log_class_changes(config.report_dir, run.classes, run.images.digest_of)  # moved by a review, say


def assemble_sets(run: Run) -> None:
    """The training, validation and test matrices from the cache, over the images that could be read."""
    config, settings = run.config, cached_settings(run.config)
    run.splits = resplit_readable(run.classes, run.splits, run.images.skipped, config)
    rows = image_splits(run.splits) if run.multi_label else run.splits  # one row per image, not per label
    run.data, run.plain = load_trained_and_plain(run.cache, rows, run.images.digest_of,
                                                 run.module.bottleneck_size, settings.distortion, settings.copies)
    if run.multi_label:
        run.targets = multi_label_run.set_targets(run.data, run.splits)
    run.counts = check_usable(run.splits, run.images.skipped, config.run.strict)
    run.test, run.test_rows = pick_test_images(run.data["testing"], config.training.test_batch_size,
                                               config.training.seed)


def select_setting(run: Run, open_caches: contextlib.ExitStack) -> None:
    """--preset auto: cross-validate the grid on the training and validation images, then run with the setting
    chosen.  The test images take no part, so the final test accuracy still measures a setting chosen without
    them.  When another bottleneck layer wins, the run goes on with that layer's network and cache."""
    config = run.config
    flags = config.flags()
    fixed = {flag: flags[flag] for flag in sorted(config.selection.fixed)}
    grid, loaded = model_selection.GRID, config.bottlenecks.bottleneck_layer
    if config.bottlenecks.tfhub_module != BUILTIN_MODULE:
        grid = model_selection.without_layer(grid)
    elif config.fine_tune.enabled:  # its activations were cached below the loaded block
        fixed[model_selection.LAYER_FLAG] = loaded
    layers = list(dict.fromkeys(p.get(model_selection.LAYER_FLAG, loaded) for p in
                                model_selection.grid_points(fixed, grid)))
    names = run.plain["training"].names + run.plain["validation"].names
    y = np.concatenate([run.plain["training"].y, run.plain["validation"].y])
    networks = {loaded: (run.module, run.cache)}
    vectors = {loaded: np.concatenate([run.plain["training"].x, run.plain["validation"].x])}
    for layer in layers:
        if layer not in networks:
            networks[layer] = other_layer(run, layer, open_caches)
            sets = load_sets(networks[layer][1], run.splits, run.images.digest_of, networks[layer][0].bottleneck_size)
            assert sets["training"].names + sets["validation"].names == names  # the same images, in the same order
            vectors[layer] = np.concatenate([sets["training"].x, sets["validation"].x])
    digest_by_name = {str(path): digest for path, digest in run.images.digest_of.items()}
    fold = assign_folds(y, [digest_by_name[n] for n in names], model_selection.FOLDS, config.training.seed or 0)
    run.selection = model_selection.select(vectors, y, fold, len(run.labels), config.training, fixed, grid)
    for line in run.selection.log_lines():
        log.info(line)
    run.config = with_flags(config, run.selection.setting)
    chosen = run.config.bottlenecks.bottleneck_layer
    if chosen != loaded:  # its distorted copies too, when asked for; then its sets
        run.module, run.cache = networks[chosen]
        run.images = bottlenecks.ensure(cached_settings(run.config), run.module, run.cache, run.classes, run.splits,
                                        show_progress=not run.config.run.quiet)
        assemble_sets(run)


def other_layer(run: Run, layer: str, open_caches: contextlib.ExitStack):
    """The built-in network ending at another block, and its cache with every image's plain bottleneck."""
    settings = dataclasses.replace(run.config.bottlenecks, flip_left_right=False, random_crop=0, random_scale=0,
                                   random_brightness=0)  # no distorted copies unless this layer is chosen
    module = with_precision(load_module(BUILTIN_MODULE, settings.model_dir, log=log.info, top_block=layer),
                            run.precision)
    cache = BottleneckCache(settings.bottleneck_dir, module.identity, module.bottleneck_size, log=log.warning)
    open_caches.callback(cache.close)
    log.info("--preset auto: the %s bottlenecks, to compare with %s's.", layer, run.config.bottlenecks.bottleneck_layer)
    bottlenecks.ensure(settings, module, cache, run.classes, run.splits, show_progress=not run.config.run.quiet)
    return module, cache


def train_new_layer(run: Run) -> None:
    """Train the new softmax layer, with progress, TensorBoard summaries and intermediate graphs."""
    config, module, labels, data = run.config, run.module, run.labels, run.data
    save_intermediate = intermediate_saver(config.export, module, labels, sigmoid=run.multi_label)
    summaries = Summaries(config.report.summaries_dir)
    summaries.settings({k: str(v) for k, v in config.flags().items()})
    steps = config.training.steps
    with Progress(steps, "Training", enabled=not config.run.quiet, interval_s=30) as bar:

        def on_step(step, steps_done, weights, biases):
            bar.update(steps_done)
            if save_intermediate:
                save_intermediate(step, weights, biases)

        try:
            if run.multi_label:
                run.layer = multi_label_run.train(data, run.targets, config.training, summaries, on_step,
                                                  config.export.intermediate_store_frequency)
            else:
                run.layer = train_layer(data["training"], data["validation"], len(labels), config.training,
                                        summaries, on_step, store_every=config.export.intermediate_store_frequency)
        finally:
            summaries.close()


def fine_tune_top_blocks(run: Run) -> None:
    run.tuned, run.module, test_p, validation_p = fine_tune_run.run(run.config, run.module, run.layer, run.activations,
                                                                run.splits, run.images.digest_of, len(run.labels),
                                                                run.test_rows)
    run.layer = run.tuned.layer
    run.logits = tuple(map(calibration.logits_from_probabilities, (test_p, validation_p)))


def fine_tune_whole_network(run: Run) -> None:
    run.tuned_network, run.module, test_logits, validation_logits = network_tuning_run.run(
        run.config, run.module, run.precision, run.layer, run.splits, run.images.digest_of, run.labels, run.test_rows)
    run.layer = run.tuned_network.layer
    run.logits = (test_logits, validation_logits)


def evaluate(run: Run) -> None:
    """Calibrate the scores on the validation set, then measure the final test accuracy."""
    config = run.config
    if run.multi_label:  # thresholds per label instead of a temperature
        run.scored, run.result, run.multi = multi_label_run.evaluate(
            run.layer, run.test, run.targets["testing"][run.test_rows], run.data["validation"],
            run.targets["validation"], run.labels, config.input.testing_percentage,
            config.report.print_misclassified_test_images)
        return
    if run.tuned is None and run.tuned_network is None:  # fine-tuning measured its own network's logits
        run.logits = tuple(numerics.layer_logits(run.layer, s.x) for s in (run.test, run.data["validation"]))
    test_logits, validation_logits = run.logits
    run.scored = calibration.score_run(not config.export.no_temperature_scaling, validation_logits,
                                       run.data["validation"].y, test_logits, run.test.y)
    log.info("Confidence: %s.", run.scored.calibration.note)
    run.result = final_test(run.test, run.scored.test_probabilities, run.labels, config.input.testing_percentage,
                            config.report.print_misclassified_test_images)


def check_data(run: Run) -> None:
    """Suspected label errors, duplicates and leakage, over every image as it is."""
    if run.multi_label:
        log.info("Data checks skipped: suspected label errors and duplicates are looked for in single-label runs "
                 "only, not with --multi_label.")
        return
    run.findings = data_checks.check_run(run.plain, run.images.digest_of, run.labels, run.config.training.seed,
                                         run.config.run.strict, run.config.bottlenecks.bottleneck_dir)
    inputs = run.config.input
    run.findings = leave_out_kept(run.findings, inputs.image_dir or inputs.labels_csv.parent)  # a review's "keep"


def export(run: Run) -> None:
    run.layer = calibration.scaled_layer(run.layer, run.scored.calibration.temperature)  # softmax(logits / T)
    export_all(run.config.export, run.module, run.layer, run.labels,
               [im.path for sp in run.splits for im in sp.training], run.multi.thresholds if run.multi else None)


def report(run: Run) -> RunResult:
    run.timings["total"] = time.perf_counter() - run.started
    tuned, validation, network = run.tuned, run.data["validation"], run.tuned_network
    kept_validation = tuned.best.validation_accuracy if tuned else network.kept.validation_accuracy if network else None
    if not run.config.input.labels_csv:  # the review moves images between class folders; a CSV's labels are its own
        write_record(run.config.report_dir, run.config.input.image_dir, run.labels, run.splits, run.images.digest_of,
                     [Predictions(run.test.names, run.test.y, run.scored.test_probabilities),
                      Predictions(validation.names, validation.y, run.scored.validation_probabilities)])
    summary = write_report(run.config.report_dir, ReportData(
        labels=run.labels, history=run.layer.history, test_true=run.result.true,
        test_predicted=run.result.predicted, test_names=run.result.names, counts=run.counts,
        skipped=run.images.skipped, settings=run.config.flags(), module=run.module, timings=run.timings,
        test_accuracy=run.result.accuracy, validation_accuracy=kept_validation,
        fine_tune=fine_tune_run.summary(run.config.fine_tune, tuned) if tuned else None,
        network_fine_tune=network_tuning_run.summary(network, run.config.network) if network else None,
        calibration=run.scored.summary, findings=run.findings,
        page=PageData(Predictions(run.test.names, run.test.y, run.scored.test_probabilities),
                      Predictions(validation.names, validation.y, run.scored.validation_probabilities),
                      run.findings),
        views=None if run.multi else ViewInputs(run.module, run.layer, run.plain, run.config.report.summaries_dir,
                                                run.config.bottlenecks.precision,
                                                fine_tuned=tuned is not None or network is not None,
                                                heatmaps=not run.config.report.skip_heatmaps,
                                                seed=run.config.training.seed,
                                                cache_dir=run.config.bottlenecks.bottleneck_dir),
        multi_label=run.multi.summary_fields() if run.multi else None,
        model_selection=run.selection.summary() if run.selection else None,
    ))
    log.info("Wrote the report to %s", run.config.report_dir)
    return RunResult(run.labels, run.layer, run.result.accuracy, run.multi.test.count if run.multi else
                     len(run.result.true), run.counts,
                     run.images.skipped, run.result.misclassified, run.timings, summary)


# ------------------------------------------------------------------------------------------ their helpers


def find_classes(config: RetrainConfig) -> list[ImageClass]:
    inputs = config.input
    if inputs.labels_csv:
        listing = read_labels_csv(inputs.labels_csv, inputs.image_dir, inputs.multi_label, config.run.strict)
    else:
        listing = list_images(inputs.image_dir, output_locations(config))  # never the run's own outputs
    for warning in bounded(listing.warnings, "warnings about the class folders"):
        log.warning(warning)
    if listing.outputs_summary():
        log.info(listing.outputs_summary())
    if listing.ignored_summary():
        log.warning(listing.ignored_summary())
    return listing.classes


def cached_settings(config: RetrainConfig) -> BottleneckSettings:
    """The bottleneck settings the cache is filled with.  --fine_tune_network distorts its images afresh at every
    epoch, so no distorted copies are cached for the new layer it starts from."""
    if not config.network.enabled:
        return config.bottlenecks
    return dataclasses.replace(config.bottlenecks, flip_left_right=False, random_crop=0, random_scale=0,
                               random_brightness=0)


def resplit_readable(classes: list[ImageClass], splits, skipped, config: RetrainConfig):
    """Split again over the readable images when some were skipped, so small classes keep their guarantee."""
    if not skipped:
        return splits
    skipped_paths = {s.path for s in skipped}
    readable = [ImageClass(c.label, c.folder, [im for im in c.images if im.path not in skipped_paths])
                for c in classes]
    split = split_by_image if config.input.multi_label else split_classes
    return split(readable, config.input.validation_percentage, config.input.testing_percentage, log.warning)


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
