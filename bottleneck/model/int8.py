"""The feature extractor as a full-integer TensorFlow Lite model (--precision int8).

The part of the network from the images to the bottleneck is converted once per
network into a TFLite model whose weights and activations are int8, and kept
in ``<model_dir>/int8/``, beside the converted weights.  Its input and output
stay float32 (the model quantizes and dequantizes inside), so it is a drop-in
for the float network: [N, H, W, 3] in [0, 1] -> [N, D].

Calibration uses a fixed set of photos shipped with the tool: every image under
``examples/flower_photos``, in sorted order, preprocessed exactly as for
training.  The file name is a digest of the network's identity and of those
photos' bytes, so the same network gives the same artifact on every machine,
and changing either makes a new one.  The model is sealed with its SHA-256 when
written (sealed.py) and checked before use; a damaged one is quantized again.

The model runs on TensorFlow Lite's XNNPACK delegate, one single-threaded
interpreter per core (see ``Int8Features``), one image per invoke.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..atomic import all_or_nothing, write_text_atomic
from ..data.digest import named_files_digest
from ..data.names import one_line
from ..errors import UserError, first_line
from . import sealed

log = logging.getLogger("retrain")

CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "examples" / "flower_photos"
FOLDER = "int8"


def calibration_paths(folder: Path = CALIBRATION_DIR) -> list[Path]:
    """The calibration photos: every image file under ``folder``, sorted by relative path."""
    from ..data.images import is_candidate

    return sorted((p for p in folder.rglob("*") if p.is_file() and is_candidate(p.name)),
                  key=lambda p: p.relative_to(folder).as_posix())


def artifact_path(model_dir, identity: str, paths: list[Path]) -> Path:
    # The calibration photos' names and bytes are part of the name, so another set makes another artifact.
    photos = named_files_digest((path.name, path) for path in paths)
    key = hashlib.sha256(f"{identity}\n{photos}".encode()).hexdigest()[:16]
    return Path(model_dir) / FOLDER / f"features-{key}.tflite"


def quantize(concrete_fn, height: int, width: int, paths: list[Path], owner=None) -> bytes:
    """Full-integer TFLite bytes of ``concrete_fn`` (float images -> float features), calibrated on ``paths``."""
    import tensorflow as tf

    from ..data.images import representative_images
    from .tf_import import parked_stderr

    images = representative_images(paths, height, width, limit=len(paths))  # every calibration photo
    if not images:
        raise UserError(f"--precision int8 calibrates on the photos in {CALIBRATION_DIR}, and none could be read.",
                        exit_code=1)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete_fn], owner)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([image[np.newaxis]] for image in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        # The converter's native code prints its own progress lines, and it warns that a float-input
        # model has no input statistics, which is how this model is meant to be.
        with parked_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return converter.convert()
    except Exception as exc:  # ConverterError and friends: an op that has no int8 kernel, say
        first = first_line(exc)
        raise UserError(f"Could not quantize the network to int8 for TensorFlow Lite: {first.rstrip('.')}.",
                        exit_code=1) from None


def ensure_artifact(model_dir, identity: str, build_fn, height: int, width: int, owner=None,
                    paths: list[Path] | None = None) -> Path:
    """The int8 model for the network named ``identity``, quantized now if it is not there yet.

    ``build_fn()`` returns the float concrete function to quantize; it is only
    called when the artifact is missing or damaged.
    """
    paths = calibration_paths() if paths is None else paths
    target = artifact_path(model_dir, identity, paths)
    if target.is_file():
        problem = artifact_damage(target)
        if problem is None:
            return target
        log.warning("The int8 model %s is damaged (%s); quantizing it again.", one_line(target), problem)
    log.info("Quantizing the network to int8 on %d calibration photos from %s (once; kept in %s).",
             len(paths), CALIBRATION_DIR, target.parent)
    model = quantize(build_fn(), height, width, paths, owner)
    target.parent.mkdir(parents=True, exist_ok=True)
    with all_or_nothing():
        sealed.write_sealed(target, model)
        write_text_atomic(target.with_suffix(".json"), json.dumps(
            {"network": identity, "calibration": [p.relative_to(CALIBRATION_DIR).as_posix() if p.is_relative_to(
                CALIBRATION_DIR) else str(p) for p in paths]}, indent=1) + "\n")
    return target


def artifact_damage(target: Path) -> str | None:
    """Why the int8 model at ``target`` cannot be used, in words; None when it is sound.

    A sealed model is checked against its recorded SHA-256; one quantized before
    seals were recorded is loaded by TensorFlow Lite, and sealed when it loads.
    """
    if sealed.is_sealed(target):
        return sealed.damage(target)
    from .tf_import import make_interpreter

    try:
        make_interpreter(target.read_bytes(), 1)
    except OSError as exc:
        return f"it cannot be read: {exc.strerror or exc}"
    except (ValueError, RuntimeError) as exc:  # "The model is not a valid Flatbuffer buffer", say
        return f"TensorFlow Lite cannot load it: {first_line(exc).rstrip('.')}"
    with contextlib.suppress(OSError):  # a read-only model folder: checked the same way next time
        sealed.seal(target)
    return None


def module_artifact(module, model_dir, paths: list[Path] | None = None) -> Path:
    """The int8 feature extractor of a FeatureModule (float identity: the precision is not part of it)."""
    import tensorflow as tf

    def build():
        return tf.function(module.features, autograph=False).get_concrete_function(
            tf.TensorSpec([None, module.height, module.width, 3], tf.float32, name="images"))

    owner = getattr(module.features, "_owner", None)  # a loaded SavedModel: the converter freezes its variables
    return ensure_artifact(model_dir, module.identity, build, module.height, module.width, owner, paths)


class Int8Features:
    """Runs an int8 TFLite feature extractor: float32 [N, H, W, 3] -> float32 [N, D].

    One single-threaded interpreter per core, each taking its share of the batch
    one image per invoke: that used less CPU per image than one interpreter
    splitting every image over all cores, and a core busy decoding then delays
    only its own images instead of every invoke.
    """

    def __init__(self, path, workers: int | None = None):
        from .tf_import import make_interpreter

        try:
            model = Path(path).read_bytes()
        except OSError as exc:
            raise UserError(f"The int8 model '{path}' cannot be read ({exc.strerror or exc}).", exit_code=1) from None
        self._interpreters = [_Single(make_interpreter(model, 1)) for _ in range(workers or os.cpu_count() or 1)]
        self.height, self.width = self._interpreters[0].height, self._interpreters[0].width
        self._pool = ThreadPoolExecutor(max_workers=len(self._interpreters), thread_name_prefix="int8")

    def __call__(self, batch) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if not len(batch):
            return np.empty((0, 0), dtype=np.float32)
        shares = np.array_split(batch, len(self._interpreters))  # views: no copy of the pixels
        parts = list(self._pool.map(lambda pair: pair[0](pair[1]), zip(self._interpreters, shares)))
        return np.concatenate([part for part in parts if part is not None])


class _Single:
    """One interpreter with a batch of one; the TFLite runtime releases the interpreter lock while it computes."""

    def __init__(self, interpreter):
        from .tf_import import parked_stderr

        self.interpreter = interpreter
        self.input = interpreter.get_input_details()[0]
        shape = list(self.input["shape"])
        self.height, self.width = int(shape[1]), int(shape[2])
        interpreter.resize_tensor_input(self.input["index"], [1, self.height, self.width, 3])
        with parked_stderr():  # 'Created TensorFlow Lite XNNPACK delegate for CPU.'
            interpreter.allocate_tensors()
        self.output = interpreter.get_output_details()[0]

    def __call__(self, images: np.ndarray) -> np.ndarray | None:
        if not len(images):
            return None
        out = None
        for i in range(len(images)):
            self.interpreter.set_tensor(self.input["index"], images[i:i + 1])
            self.interpreter.invoke()
            row = self.interpreter.get_tensor(self.output["index"]).reshape(-1)
            if out is None:
                out = np.empty((len(images), row.size), dtype=np.float32)
            out[i] = row
        return out
