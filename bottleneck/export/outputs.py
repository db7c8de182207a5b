"""Write what a run produces: the frozen graph, the labels file, the SavedModel, the TFLite model, the checkpoint.

``export_all`` writes them all or none: every file is written beside its
target and renamed into place only when all of them were written, so a failed
run leaves the previous outputs as they were.  The graph itself is defined in
``classifier.py`` (the classic ``Placeholder`` -> ``final_result`` contract, so the
classic ``label_image.py --input_layer=Placeholder --output_layer=final_result``
works); the SavedModel's serving signatures are described in
``write_saved_model``; the TFLite conversion lives in ``tflite.py``.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..atomic import FileSwap, all_or_nothing, defer, join, remove_atomic, write_bytes_atomic, write_text_atomic
from ..config.checks import check_saved_model_dir
from ..config.settings import ExportSettings, thresholds_path
from ..errors import EXIT_FAILURE, UserError
from ..model.modules import FeatureModule
from ..training.layer import TrainedLayer
from ..training.multi_label_metrics import Thresholds
from .classifier import classifier_fn, frozen_graph_def
from .onnx import write_onnx
from .tfjs import check_tfjs_dir, write_tfjs
from .tflite import write_tflite
from .thresholds import write_thresholds

log = logging.getLogger("retrain")

# The SavedModel's signatures: encoded image bytes (TensorFlow Serving's default) and decoded pixels.
SERVING_BYTES = "serving_default"
SERVING_IMAGES = "serving_images"
INTERMEDIATE_LABELS = "output_labels.txt"  # written beside the intermediate graphs
# What the export owns in a SavedModel folder: what tf.saved_model.save writes.  Anything else there (notes,
# TensorFlow Serving's assets.extra/ warm-up requests) is the user's and is carried into each new SavedModel.
SAVED_MODEL_OWNS = ("saved_model.pb", "saved_model.pbtxt", "fingerprint.pb", "variables", "assets")


def export_all(settings: ExportSettings, module: FeatureModule, layer: TrainedLayer, labels: list[str],
               training_paths=(), thresholds: Thresholds | None = None) -> None:
    """Write every output, or none; ``training_paths`` are the images an int8 TFLite model is calibrated on.

    With ``thresholds`` the classifier is a multi-label run's: a sigmoid per label, and the thresholds file beside
    the labels."""
    if settings.saved_model_dir:  # refuse a folder that is not ours before any output is replaced
        check_saved_model_dir(settings.saved_model_dir)
    if settings.tfjs_output:
        check_tfjs_dir(settings.tfjs_output)
    sigmoid = thresholds is not None
    try:
        with all_or_nothing():
            graph_def = write_frozen_graph(settings.output_graph, module, layer.weights, layer.biases,
                                           settings.final_tensor_name, sigmoid)
            log.info("Saved the trained graph to %s", settings.output_graph)
            write_labels(settings.output_labels, labels)
            log.info("Saved the labels to %s", settings.output_labels)
            if sigmoid:
                write_thresholds(thresholds_path(settings.output_labels), labels, thresholds)
                log.info("Saved the thresholds to %s", thresholds_path(settings.output_labels))
            else:  # an earlier multi-label run's thresholds must not stay beside these labels
                remove_atomic(thresholds_path(settings.output_labels))
            if settings.saved_model_dir:
                write_saved_model(settings.saved_model_dir, module, layer.weights, layer.biases, labels,
                                  settings.final_tensor_name, sigmoid)
                log.info("Saved the SavedModel to %s", settings.saved_model_dir)
            if settings.tflite_output:
                size = write_tflite(settings.tflite_output, module, layer.weights, layer.biases, labels,
                                    settings.tflite_quantize, training_paths, settings.final_tensor_name, sigmoid)
                log.info("Saved the TFLite model (%s, %.1f MB) to %s", settings.tflite_quantize, size / 1e6,
                         settings.tflite_output)
            if settings.onnx_output:
                write_onnx(settings.onnx_output, graph_def, module, labels, thresholds, settings.final_tensor_name)
                log.info("Saved the ONNX model to %s (checked with ONNX Runtime)", settings.onnx_output)
            if settings.tfjs_output:
                write_tfjs(settings.tfjs_output, graph_def, module, labels, thresholds, settings.final_tensor_name)
                log.info("Saved the TensorFlow.js model to %s", settings.tfjs_output)
            write_checkpoint(settings.checkpoint_path, layer.weights, layer.biases)
    except OSError as exc:
        raise UserError(f"Could not write the outputs: {exc.strerror or exc} ({exc.filename}).",
                        exit_code=EXIT_FAILURE) from None


def intermediate_saver(settings: ExportSettings, module: FeatureModule, labels: list[str], sigmoid: bool = False):
    """A training callback that writes the graph every --intermediate_store_frequency steps, or None."""
    every = settings.intermediate_store_frequency
    if not every:
        return None

    def save(step, weights, biases):
        if step > 0 and step % every == 0:
            path = settings.intermediate_output_graphs_dir / f"intermediate_{step}.pb"
            try:
                write_frozen_graph(path, module, weights.copy(), biases.copy(), settings.final_tensor_name, sigmoid)
                # The labels go beside the intermediate graphs: --output_labels changes only with the final outputs.
                write_labels(settings.intermediate_output_graphs_dir / INTERMEDIATE_LABELS, labels)
            except OSError as exc:
                raise UserError(f"Could not write the intermediate graph: {exc.strerror or exc} ({exc.filename}).",
                                exit_code=EXIT_FAILURE) from None
            log.info("Save intermediate result to : %s", path)

    return save


def check_final_tensor_name(module: FeatureModule, final_tensor_name: str) -> None:
    """Raise UserError when the module's own graph already uses ``final_tensor_name``.

    Traced once with zero weights, before any bottleneck is computed: TensorFlow would
    otherwise rename the softmax silently and the export would fail at the very end.
    """
    zeros = np.zeros((module.bottleneck_size, 2), np.float32)
    try:
        frozen_graph_def(module, zeros, zeros[0], final_tensor_name)
    except (RuntimeError, ValueError):
        raise UserError(f"--final_tensor_name '{final_tensor_name}' is already the name of a tensor in the "
                        "module's graph; choose another name.") from None


def write_frozen_graph(path, module, weights, biases, final_tensor_name, sigmoid: bool = False):
    """Write the frozen graph atomically; returns its GraphDef (the ONNX and TensorFlow.js exports convert it)."""
    graph_def = frozen_graph_def(module, weights, biases, final_tensor_name, sigmoid)
    write_bytes_atomic(path, graph_def.SerializeToString())
    return graph_def


def write_labels(path, labels: list[str]) -> None:
    write_text_atomic(path, "".join(f"{label}\n" for label in labels))


def write_saved_model(directory, module: FeatureModule, weights, biases, labels: list[str], final_tensor_name,
                      sigmoid: bool = False) -> None:
    """A SavedModel of the whole classifier, with two serving signatures.

    ``serving_default`` (TensorFlow Serving's default) takes encoded images:
      input  ``image_bytes``: tf.string [N], each a JPEG, PNG, GIF or BMP file's bytes
             (over TF Serving's REST API send ``{"image_bytes": {"b64": "..."}}``).
      Decoding happens in the graph and reproduces ``images.load_for_model``: JPEGs are
      decoded like PIL (accurate integer DCT, libjpeg's 1/2, 1/4 or 1/8 draft scale when
      the photo is that many times larger than the model input), PNG transparency is
      composited onto white, and the pixels are resized with TensorFlow's legacy bilinear
      resize (no half-pixel centres) to the module's size, then scaled to [0, 1].  Unlike
      label_image.py it ignores EXIF orientation: send upright pixels.  GIFs give their first
      frame; a file that cannot be decoded fails the whole call (InvalidArgumentError).
    ``serving_images`` takes decoded pixels:
      input  ``images``: float32 [N, H, W, 3], RGB in [0, 1], already resized to the module size.
    Both return ``scores`` (float32 [N, classes], softmax; a sigmoid per label for a
    multi-label run), ``classes`` (int64 [N], index of the
    best score) and ``labels`` (tf.string [N], that class's label).

    The final layer stays two variables (``final_weights``, ``final_biases``).  The
    SavedModel is built in a temporary sibling folder and swapped in whole (at the end
    of an ``atomic.all_or_nothing()`` block when inside one), so a failed export leaves
    the previous SavedModel intact.  An existing folder that is not empty and holds no
    SavedModel is refused rather than replaced.  The export owns only the files that
    TensorFlow writes (``SAVED_MODEL_OWNS``); every other file of the previous folder
    (a ``NOTES.txt``, TensorFlow Serving's ``assets.extra/tf_serving_warmup_requests``)
    is carried into the new one, linked where the file system allows.
    """
    import tensorflow as tf

    directory = Path(directory)
    check_saved_model_dir(directory)
    height, width = module.height, module.width
    model = tf.Module()
    owner = getattr(module.features, "_owner", None)
    if owner is not None:  # a loaded SavedModel / TF-Hub module: its variables must be tracked to be saved
        model.feature_module = owner
    model.final_weights = tf.Variable(weights, name="final_weights")
    model.final_biases = tf.Variable(biases, name="final_biases")
    model.labels_ = tf.constant(labels)
    # One tf.function shared by both signatures: the network is stored once in the SavedModel.
    classify = tf.function(classifier_fn(module, model.final_weights, model.final_biases, final_tensor_name, sigmoid),
                           autograph=False)

    def outputs(images):
        scores = classify(images)
        classes = tf.argmax(scores, axis=1)
        return {"scores": scores, "classes": classes, "labels": tf.gather(model.labels_, classes)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve_bytes(image_bytes):
        images = tf.map_fn(
            lambda data: decode_for_model(data, height, width), image_bytes,
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
        )
        return outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="images")])
    def serve_images(images):
        return outputs(images)

    model.serve_bytes, model.serve_images = serve_bytes, serve_images
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tf.saved_model.save(model, str(tmp / "model"),
                            signatures={SERVING_BYTES: serve_bytes, SERVING_IMAGES: serve_images})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    previous = tmp / "previous"
    swapped = []  # non-empty once the new folder is in place

    def commit():
        if directory.exists():
            directory.rename(previous)
        try:
            (tmp / "model").rename(directory)
        except OSError:
            if previous.exists():
                previous.rename(directory)
            raise
        swapped.append(True)

    def rollback():  # another output failed after this folder was swapped in: bring the old one back
        if not swapped:
            return  # this swap's own commit failed, and it put the old folder back itself
        directory.rename(tmp / "model")
        if previous.exists():
            previous.rename(directory)
        swapped.clear()

    def prepare():
        check_saved_model_dir(directory)  # again: the swap may have waited for the end of a block
        carry_user_files(directory, tmp / "model")  # taken at the last moment, so a file added meanwhile is kept

    defer(commit, lambda: shutil.rmtree(tmp, ignore_errors=True), prepare=prepare, rollback=rollback,
          finish=lambda: shutil.rmtree(tmp, ignore_errors=True), target=directory)


def carry_user_files(previous: Path, new: Path) -> None:
    """Put every entry of the ``previous`` SavedModel folder that the export does not own into ``new``."""
    if not previous.is_dir():
        return
    for entry in sorted(previous.iterdir()):
        if entry.name in SAVED_MODEL_OWNS:
            continue
        target = new / entry.name
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, target, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, target)


def _link_or_copy(source, target) -> None:
    """A hard link costs no space and keeps the file as it is; a copy where links are not possible."""
    if os.path.islink(source):
        os.symlink(os.readlink(source), target)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def decode_for_model(data, height: int, width: int):
    """In-graph twin of images.load_for_model: one encoded image (a scalar tf.string) -> float32 [height, width, 3].

    The test suite checks that the pixels are identical to load_for_model's for JPEG (draft scales
    included), PNG (grey, palette, alpha) and GIF files.
    """
    import tensorflow as tf

    def jpeg():
        # PIL's draft(): the largest libjpeg scale 1/s (s in 8, 4, 2, 1) that keeps both sides >= the target.
        shape = tf.io.extract_jpeg_shape(data)
        scale = tf.minimum(shape[1] // width, shape[0] // height)
        branch = tf.reduce_sum(tf.cast(scale >= tf.constant([2, 4, 8], dtype=scale.dtype), tf.int32))
        decoders = [
            lambda ratio=ratio: tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE")
            for ratio in (1, 2, 4, 8)
        ]
        return tf.cast(tf.switch_case(branch, decoders), tf.float32)

    def other():
        pixels = tf.cast(tf.io.decode_image(data, channels=0, expand_animations=False), tf.float32)
        channels = tf.shape(pixels)[2]
        is_png = tf.equal(tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n")
        pixels = tf.cond(
            is_png & ((channels == 2) | (channels == 4)),
            # Transparency onto white, rounded as PIL's alpha_composite rounds.
            lambda: tf.round(255.0 + (pixels[..., :-1] - 255.0) * pixels[..., -1:] / 255.0),
            lambda: pixels,
        )
        return tf.cond(tf.shape(pixels)[2] == 1, lambda: tf.tile(pixels, [1, 1, 3]), lambda: pixels[..., :3])

    pixels = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    pixels = tf.ensure_shape(pixels, [None, None, 3])
    # The op behind tf.compat.v1.image.resize_bilinear(align_corners=False), without its deprecation warning.
    resized = tf.raw_ops.ResizeBilinear(
        images=pixels[tf.newaxis], size=[height, width], align_corners=False, half_pixel_centers=False
    )[0]
    return resized / 255.0


def write_checkpoint(path, weights, biases) -> None:
    """The new layer as a TensorFlow checkpoint (``<path>.index`` and ``<path>.data-*``), written atomically.

    TensorFlow writes the files in a temporary sibling folder; each is then renamed over its
    target with the other outputs (at the end of an ``atomic.all_or_nothing()`` block).
    """
    import tensorflow as tf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        ckpt = tf.train.Checkpoint(final_weights=tf.Variable(weights), final_biases=tf.Variable(biases))
        ckpt.write(str(tmp / path.name))
        swaps = [FileSwap(written, path.parent / written.name) for written in sorted(tmp.iterdir())]
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for swap in swaps:
        join(swap)
    # The folder goes once its files are placed, or when the block fails.
    remove = lambda: shutil.rmtree(tmp, ignore_errors=True)  # noqa: E731
    defer(lambda: None, remove, finish=remove)
