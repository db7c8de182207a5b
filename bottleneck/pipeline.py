"""One retraining run, start to finish: walk -> split -> cache -> train -> evaluate -> export."""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import numpy as np

from . import inception_v3
from .cache import PLAIN, BottleneckCache, Entry, import_classic_text
from .config import RetrainConfig
from .errors import EXIT_FAILURE, EXIT_OK, UserError
from .extract import Job, Skipped, compute_missing
from .modules import FeatureModule, load_module
from .progress import Progress
from .report import ReportData, human_summary, write_report
from .split import SETS, ClassSplit, split_class
from .train import SplitData, TrainSettings, TrainedLayer, predict, train_layer
from .walk import ImageClass, ImageFile, list_images

log = logging.getLogger("retrain")

# Above this many bytes of float32 training vectors, hold them as float16 to bound memory.
FLOAT16_ABOVE_BYTES = 1 << 30


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


def run(config: RetrainConfig) -> int:
    result = retrain(config)
    # The short human summary is the command's result: stdout, even with --quiet.
    for line in human_summary(result.summary):
        print(line)
    return EXIT_OK


def retrain(config: RetrainConfig) -> RunResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()

    listing = list_images(config.image_dir)
    for warning in listing.warnings:
        log.warning(warning)
    labels = [c.label for c in listing.classes]
    splits = _split_classes(listing.classes, config)
    total = sum(len(c.images) for c in listing.classes)
    log.info("Found %d images in %d classes under %s.", total, len(labels), config.image_dir)
    timings["walk"] = time.perf_counter() - started

    t = time.perf_counter()
    module = load_module(config.tfhub_module, config.model_dir, log=log.info, top_block=config.bottleneck_layer)
    timings["load_module"] = time.perf_counter() - t

    t = time.perf_counter()
    cache = BottleneckCache(config.bottleneck_dir, module.identity, module.bottleneck_size, log=log.warning)
    activations = None
    if config.fine_tune:
        from .fine_tune import activation_cache

        activations = activation_cache(config.bottleneck_dir, module, config.fine_tune_layers, log.warning)
    try:  # the activations stay open through fine-tuning; the bottlenecks are all in memory after load_sets
        try:
            digest_of, skipped = ensure_bottlenecks(config, module, cache, listing.classes, splits, activations)
            timings["bottlenecks"] = time.perf_counter() - t
            skipped_paths = {s.path for s in skipped}
            if skipped_paths:  # split again over the readable images, so small classes keep their guarantee
                readable = [ImageClass(c.label, c.folder, [im for im in c.images if im.path not in skipped_paths])
                            for c in listing.classes]
                splits = _split_classes(readable, config)
            copies = config.distorted_copies if config.distortion.active else 0
            data = load_sets(cache, splits, digest_of, module.bottleneck_size,
                             config.distortion if copies else None, copies)
        finally:
            cache.close()
        return _train_and_export(config, listing, labels, splits, digest_of, skipped, module, data, activations,
                                 timings, started)
    finally:
        if activations is not None:
            activations.close()


def _train_and_export(config, listing, labels, splits, digest_of, skipped, module, data, activations,
                      timings, started) -> RunResult:
    if skipped:
        if config.strict:
            first = skipped[0]
            raise UserError(
                f"{len(skipped)} image(s) could not be read and --strict is set, e.g. {first.path}: {first.reason}."
            )
        log.warning("Skipped %d unreadable image(s); see the lines above for each path and reason.", len(skipped))
    counts = {sp.label: {s: len(sp.of(s)) for s in SETS} for sp in splits}
    empty = [label for label, c in counts.items() if c["training"] == 0]
    if empty:
        raise UserError(f"No usable training images left for class(es): {', '.join(empty)}.")

    t = time.perf_counter()
    from .tensorboard import Summaries

    summaries = Summaries(config.summaries_dir)
    summaries.settings({k: str(v) for k, v in dataclasses.asdict(config).items()})
    settings = TrainSettings(
        steps=config.how_many_training_steps,
        learning_rate=config.learning_rate,
        batch_size=config.train_batch_size,
        eval_step_interval=config.eval_step_interval,
        validation_batch_size=config.validation_batch_size,
        seed=config.random_seed,
        optimizer=config.optimizer,
        label_smoothing=config.label_smoothing,
        dropout=config.dropout,
        weight_decay=config.weight_decay,
        early_stopping_patience=config.early_stopping_patience,
    )
    save_intermediate = _intermediate_saver(config, module, labels) if config.intermediate_store_frequency else None
    with Progress(settings.steps, "Training", enabled=not config.quiet, interval_s=30) as bar:

        def on_step(step, steps_done, weights, biases):
            bar.update(steps_done)
            if save_intermediate:
                save_intermediate(step, weights, biases)

        try:
            layer = train_layer(
                data["training"], data["validation"], len(labels), settings, summaries, on_step,
                store_every=config.intermediate_store_frequency,
            )
        finally:
            summaries.close()
    timings["training"] = time.perf_counter() - t

    test = data["testing"]
    pick = np.arange(len(test.y))
    if config.test_batch_size >= 0 and config.test_batch_size < len(test.y):
        pick = np.random.default_rng(config.random_seed).choice(len(test.y), config.test_batch_size, replace=False)
        test = SplitData(test.x[pick], test.y[pick], [test.names[i] for i in pick])
    tuned = None
    if activations is not None:
        t = time.perf_counter()
        tuned, module, test_probabilities = _fine_tune(config, module, layer, activations, splits, digest_of,
                                                       len(labels), pick)
        layer = tuned.layer
        timings["fine_tune"] = time.perf_counter() - t
        predicted = test_probabilities.argmax(axis=1)
    else:
        predicted = predict(layer, test.x).argmax(axis=1)
    test_accuracy, misclassified = None, []
    if len(test.y):
        test_accuracy = float((predicted == test.y).mean())
        log.info("Final test accuracy = %.1f%% (N=%d)", test_accuracy * 100, len(test.y))
        misclassified = [
            (test.names[i], labels[test.y[i]], labels[predicted[i]]) for i in np.flatnonzero(predicted != test.y)
        ]
        if config.print_misclassified_test_images:
            log.info("=== MISCLASSIFIED TEST IMAGES ===")
            for name, _truth, guess in misclassified:
                log.info("%70s  %s", name, guess)
    else:
        log.warning("No test images (--testing_percentage %s): no final test accuracy.", config.testing_percentage)

    gate = config.assert_accuracy_at_least
    if gate is not None and (test_accuracy is None or test_accuracy * 100 < gate):
        shown = "not measured (no test images)" if test_accuracy is None else f"{test_accuracy * 100:.1f}%"
        raise UserError(
            f"Final test accuracy {shown} is below --assert_accuracy_at_least {gate:g}%; "
            "the previous outputs were left untouched.",
            exit_code=EXIT_FAILURE,
        )

    t = time.perf_counter()
    export_all(config, module, layer, labels, [im.path for sp in splits for im in sp.training])
    timings["export"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    summary = write_report(
        config.resolved_report_dir,
        ReportData(
            labels=labels, history=layer.history, test_true=test.y, test_predicted=predicted,
            test_names=test.names, counts=counts, skipped=skipped, settings=config, module=module,
            timings=timings, test_accuracy=test_accuracy,
            validation_accuracy=tuned.best.validation_accuracy if tuned else None,
            fine_tune=_fine_tune_summary(config, tuned) if tuned else None,
        ),
    )
    log.info("Wrote the report to %s", config.resolved_report_dir)
    return RunResult(labels, layer, test_accuracy, len(test.y), counts, skipped, misclassified, timings, summary)


def ensure_bottlenecks(config, module: FeatureModule, cache: BottleneckCache, classes, splits: list[ClassSplit],
                       activations: BottleneckCache | None = None):
    """Make sure every image has a cached bottleneck; returns digests by path and the images skipped.

    With ``activations`` (fine-tuning), every image also needs its activations at the cut.
    """
    images: list[tuple[ImageFile, str]] = [(im, c.folder.name) for c in classes for im in c.images]
    digest_of, unreadable = cache.digests([im.path for im, _f in images])
    skipped = [Skipped(path, reason) for path, reason in unreadable.items()]
    readable = [(im, folder, digest_of[im.path]) for im, folder in images if im.path in digest_of]
    classes_of: dict[str, set[str]] = {}
    for image, folder, digest in readable:
        classes_of.setdefault(digest, set()).add(folder)
    for digest, folders in classes_of.items():
        if len(folders) > 1:
            same = [str(im.path) for im, _f, d in readable if d == digest]
            log.warning("The same image is in several classes (%s): %s", ", ".join(sorted(folders)), "; ".join(same))

    present = cache.present([Entry(d) for d in classes_of])
    first_path: dict[str, tuple[ImageFile, str]] = {}
    for image, folder, digest in readable:
        first_path.setdefault(digest, (image, folder))
    missing = {d: place for d, place in first_path.items() if Entry(d) not in present}
    imported = 0
    if missing and module.classic_cache_suffixes:
        candidates = [
            (Entry(d), [config.bottleneck_dir / folder / f"{image.name}_{suffix}.txt" for suffix in module.classic_cache_suffixes])
            for d, (image, folder) in missing.items()
        ]
        imported = import_classic_text(cache, candidates)
        if imported:
            log.info("Imported %d bottlenecks from the classic script's text files.", imported)
            present = cache.present([Entry(d) for d in first_path])
    if activations is not None:  # fine-tuning also needs each image's activations at the cut
        present &= activations.present([Entry(d) for d in first_path])
    jobs = [Job(Entry(d), image.path) for d, (image, _f) in first_path.items() if Entry(d) not in present]
    log.info("%d bottlenecks cached, %d imported, %d to compute.", len(first_path) - len(missing), imported, len(jobs))
    distortion = config.distortion
    if distortion.active:
        # Distorted copies of training images only: validation and test images are never distorted.
        training = {digest_of[im.path]: im.path for sp in splits for im in sp.training if im.path in digest_of}
        wanted = [(Entry(d, distortion.variant(c)), path, c) for d, path in training.items()
                  for c in range(config.distorted_copies)]
        have = cache.present([e for e, _p, _c in wanted])
        if activations is not None:
            have &= activations.present([e for e, _p, _c in wanted])
        copy_jobs = [Job(e, path, c) for e, path, c in wanted if e not in have]
        log.info("%d distorted copies cached, %d to compute (%d per training image).",
                 len(wanted) - len(copy_jobs), len(copy_jobs), config.distorted_copies)
        jobs += copy_jobs
    if jobs:
        t = time.perf_counter()
        with Progress(len(jobs), "Bottlenecks", enabled=not config.quiet) as bar:
            stores, features = [cache], None
            if activations is not None:  # one forward pass fills both caches
                from .fine_tune import extraction_fn

                stores, features = [cache, activations], extraction_fn(module, config.fine_tune_layers)
            bad = compute_missing(module, jobs, stores, config.extraction_batch_size, bar.update,
                                  features=features, distortion=distortion)
        log.info("%d bottlenecks created (%.1f images/s).", len(jobs) - len(bad), len(jobs) / (time.perf_counter() - t))
        bad = list({s.path: s for s in bad}.values())  # a failed distorted copy means its image failed
        # Every file with the same bad content is skipped too, not only the one that was decoded.
        reason_of = {digest_of[s.path]: s.reason for s in bad}
        skipped += [Skipped(im.path, reason_of[d]) for im, _f, d in readable if d in reason_of]
    for s in skipped:
        log.warning("Skipping %s: %s", s.path, s.reason)
    return digest_of, skipped


def _split_classes(classes: list[ImageClass], config: RetrainConfig) -> list[ClassSplit]:
    splits = []
    for image_class in classes:
        split, note = split_class(image_class, config.validation_percentage, config.testing_percentage)
        if note:
            log.warning(note)
        splits.append(split)
    return splits


def set_entries(splits: list[ClassSplit], digest_of, distortion=None, copies: int = 0):
    """set name -> (cache entries, class indices, image paths), in one fixed order.

    With a distortion, the training set has one row per distorted copy of each image.
    """
    sets = {}
    for set_name in SETS:
        entries, ys, paths = [], [], []
        for index, split in enumerate(splits):
            for image in split.of(set_name):
                digest = digest_of[image.path]
                distorted = distortion is not None and set_name == "training"
                variants = [distortion.variant(c) for c in range(copies)] if distorted else [PLAIN]
                entries += [Entry(digest, v) for v in variants]
                ys += [index] * len(variants)
                paths += [str(image.path)] * len(variants)
        sets[set_name] = (entries, np.asarray(ys, dtype=np.int32), paths)
    return sets


def load_sets(cache: BottleneckCache, splits: list[ClassSplit], digest_of, dim: int,
              distortion=None, copies: int = 0) -> dict[str, SplitData]:
    """The bottlenecks of every set, read in one pass over the cache."""
    sets = set_entries(splits, digest_of, distortion, copies)
    requests = [(entries, np.float16 if len(entries) * dim * 4 > FLOAT16_ABOVE_BYTES else np.float32)
                for entries, _ys, _paths in sets.values()]
    matrices = cache.matrices(requests)
    return {s: SplitData(x=m, y=sets[s][1], names=sets[s][2]) for s, m in zip(sets, matrices)}


def _fine_tune(config: RetrainConfig, module: FeatureModule, layer: TrainedLayer, activations: BottleneckCache,
               splits, digest_of, num_classes: int, test_pick):
    """Fine-tune the top blocks; returns the result, the module to export and the test probabilities."""
    from .fine_tune import ActivationSet, FineTuneSettings, activation_shape, classify, fine_tune, tuned_module

    blocks = config.fine_tune_layers
    copies = config.distorted_copies if config.distortion.active else 0
    sets = set_entries(splits, digest_of, config.distortion if copies else None, copies)
    shape = activation_shape(module.weights, blocks, module.top_block)
    train_set, validation_set = (ActivationSet(activations, sets[s][0], sets[s][1], shape)
                                 for s in ("training", "validation"))
    test_entries, test_y, _paths = sets["testing"]
    test_set = ActivationSet(activations, [test_entries[i] for i in test_pick], test_y[test_pick], shape)
    settings = FineTuneSettings(
        blocks=blocks, top_block=module.top_block, steps=config.fine_tune_steps, learning_rate=config.fine_tune_learning_rate,
        batch_size=config.fine_tune_batch_size, dropout=config.dropout, label_smoothing=config.label_smoothing,
        seed=config.random_seed,
    )
    log.info("Fine-tuning %s with the new layer: %d steps of %d images.",
             " and ".join(inception_v3.tuned_blocks_below(module.top_block, blocks)), settings.steps,
             settings.batch_size)
    if settings.dropout == 0 and settings.label_smoothing == 0:
        log.warning("Fine-tuning without --dropout or --label_smoothing seldom helps: the new layer already fits "
                    "the training images, leaving almost no gradient (README: Fine-tuning).")
    with Progress(settings.steps, "Fine-tuning", enabled=not config.quiet, interval_s=30) as bar:
        result = fine_tune(module.weights, layer, train_set, validation_set, num_classes, settings, on_step=bar.update)
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
    exported = tuned_module(module, result.weights, blocks) if result.helped else module
    return result, exported, probabilities


def _fine_tune_summary(config: RetrainConfig, tuned) -> dict:
    return {
        "blocks": config.fine_tune_layers,
        "steps": config.fine_tune_steps,
        "learning_rate": config.fine_tune_learning_rate,
        "batch_size": config.fine_tune_batch_size,
        "helped": tuned.helped,
        "kept_step": tuned.best.step if tuned.helped else None,
        "validation_accuracy_before": tuned.before.validation_accuracy,
        "validation_accuracy_after": tuned.best.validation_accuracy,
        "validation_cross_entropy_before": tuned.before.validation_cross_entropy,
        "validation_cross_entropy_after": tuned.best.validation_cross_entropy,
        "seconds": tuned.seconds,
        "history": [dataclasses.asdict(point) for point in tuned.history],
    }


def export_all(config: RetrainConfig, module: FeatureModule, layer: TrainedLayer, labels: list[str],
               training_paths=()) -> None:
    """Write every output; ``training_paths`` are the images an int8 TFLite model is calibrated on."""
    from . import export

    if config.saved_model_dir:  # refuse a folder that is not ours before any output is replaced
        export.check_saved_model_dir(config.saved_model_dir)
    from .atomic import all_or_nothing

    try:
        with all_or_nothing():
            export.write_frozen_graph(config.output_graph, module, layer.weights, layer.biases, config.final_tensor_name)
            log.info("Saved the trained graph to %s", config.output_graph)
            export.write_labels(config.output_labels, labels)
            log.info("Saved the labels to %s", config.output_labels)
            if config.saved_model_dir:
                export.write_saved_model(
                    config.saved_model_dir, module, layer.weights, layer.biases, labels, config.final_tensor_name
                )
                log.info("Saved the SavedModel to %s", config.saved_model_dir)
            if config.tflite_output:
                from .tflite import write_tflite

                size = write_tflite(config.tflite_output, module, layer.weights, layer.biases, labels,
                                    config.tflite_quantize, training_paths, config.final_tensor_name)
                log.info("Saved the TFLite model (%s, %.1f MB) to %s", config.tflite_quantize, size / 1e6,
                         config.tflite_output)
            export.write_checkpoint(config.checkpoint_path, layer.weights, layer.biases)
    except OSError as exc:
        raise UserError(f"Could not write the outputs: {exc.strerror or exc} ({exc.filename}).", exit_code=1) from None


def _intermediate_saver(config: RetrainConfig, module: FeatureModule, labels: list[str]):
    from . import export

    def save(step, weights, biases):
        if step > 0 and step % config.intermediate_store_frequency == 0:
            path = config.intermediate_output_graphs_dir / f"intermediate_{step}.pb"
            export.write_frozen_graph(path, module, weights.copy(), biases.copy(), config.final_tensor_name)
            export.write_labels(config.output_labels, labels)
            log.info("Save intermediate result to : %s", path)

    return save
