"""The whole classifier as a TensorFlow Lite model, and running one (label_image.py --graph=model.tflite).

The model maps float32 images [N, H, W, 3] (RGB in [0, 1], already resized to
the module's size, as the frozen graph's ``Placeholder``) to the softmax scores
[N, classes].  Its input is declared as [1, H, W, 3] with a dynamic batch
dimension, so an interpreter can resize it to any batch size.

Variants (``--tflite_quantize``), all made by ``tf.lite.TFLiteConverter``:
- ``none``: float32 weights and arithmetic;
- ``float16``: weights stored as float16 (about half the size), float32 arithmetic;
- ``dynamic``: weights stored as int8 (about a quarter), activations quantized on the fly;
- ``int8``: weights and activations int8, calibrated on up to 100 training images; the
  input and output tensors are int8 too, so a caller quantizes the [0, 1] pixels with
  the input's (scale, zero_point) and dequantizes the scores with the output's.

The labels are embedded in the file as a TFLite metadata entry named ``labels``
(UTF-8, one label per line, in score order), added the way the converter adds its
own ``CONVERSION_METADATA`` entry, so no extra package is needed;
``embedded_labels()`` reads them back and label_image.py uses them when no
``--labels`` is given.  (The tflite-support ``TFLITE_METADATA`` schema is not used:
that package is not available here.)  The ``--output_labels`` file still holds the same labels.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic
from ..config.settings import QUANTIZATIONS
from ..data.images import representative_images
from ..errors import EXIT_FAILURE, UserError, first_line
from ..model.modules import FeatureModule
from ..model.tf_import import make_interpreter, parked_stderr
from .classifier import classifier_fn

LABELS_METADATA = "labels"
REPRESENTATIVE_IMAGES = 100  # calibration images for int8


def convert(module: FeatureModule, weights, biases, labels: list[str], quantize: str = "none",
            representative_paths=(), final_tensor_name: str = "final_result", sigmoid: bool = False) -> bytes:
    """The .tflite bytes of the classifier, labels embedded."""
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization '{quantize}'")
    fn = tf.function(classifier_fn(module, weights, biases, final_tensor_name, sigmoid),
                     autograph=False).get_concrete_function(
        tf.TensorSpec([None, module.height, module.width, 3], tf.float32, name="images")
    )
    owner = getattr(module.features, "_owner", None)  # a loaded SavedModel: the converter freezes its variables
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], owner)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        images = representative_images(representative_paths, module.height, module.width, REPRESENTATIVE_IMAGES)
        if not images:
            raise UserError("--tflite_quantize int8 needs training images to calibrate on, and none could be read.")
        converter.representative_dataset = lambda: ([image[np.newaxis]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with parked_stderr():  # the converter's native code prints its own progress lines
            model = converter.convert()
    except Exception as exc:  # ConverterError and friends: an op TFLite lacks, say
        raise UserError(f"Could not convert the classifier to TensorFlow Lite ({quantize}): "
                        f"{first_line(exc).rstrip('.')}.",
                        exit_code=EXIT_FAILURE) from None
    return embed_labels(model, labels)


def write_tflite(path, module: FeatureModule, weights, biases, labels: list[str], quantize: str = "none",
                 representative_paths=(), final_tensor_name: str = "final_result", sigmoid: bool = False) -> int:
    """Convert and write atomically; returns the file's size in bytes."""
    data = convert(module, weights, biases, labels, quantize, representative_paths, final_tensor_name, sigmoid)
    write_bytes_atomic(path, data)
    return len(data)


# ---------------------------------------------------------------- labels in the file


def embed_labels(model: bytes, labels: list[str]) -> bytes:
    """The model with a ``labels`` metadata entry (replacing one already there)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer("".join(f"{label}\n" for label in labels).encode("utf-8", "backslashreplace"),
                                dtype=np.uint8)
    obj.metadata = [m for m in (obj.metadata or []) if m.name.decode("utf-8") != LABELS_METADATA]
    obj.buffers = list(obj.buffers or [])
    obj.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = LABELS_METADATA
    entry.buffer = len(obj.buffers) - 1
    obj.metadata.append(entry)
    return flatbuffer_utils.convert_object_to_bytearray(obj)


def embedded_labels(model: bytes) -> list[str] | None:
    """The labels stored by embed_labels(), or None when the model has none."""
    from tensorflow.lite.python import schema_py_generated as schema

    if model[4:8] != b"TFL3":  # the flatbuffer's file identifier
        return None
    try:
        root = schema.Model.GetRootAs(model, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if entry.Name() == LABELS_METADATA.encode():
                data = root.Buffers(entry.Buffer()).DataAsNumpy()
                text = data.tobytes().decode("utf-8") if isinstance(data, np.ndarray) else ""
                return text.splitlines()
    except (struct.error, IndexError, UnicodeDecodeError):  # a damaged file: the interpreter says more
        return None
    return None


# ---------------------------------------------------------------- running a model


class TFLiteClassifier:
    """A .tflite classifier behind classify.Classifier's interface: [N, H, W, 3] floats in -> [N, C] scores out."""

    def __init__(self, path, model: bytes):
        self.path = Path(path)
        self.interpreter = make_interpreter(model)
        self.labels = embedded_labels(model)
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
            raise UserError(f"'{self.path}' is not an image classifier (one [N, H, W, 3] input, one output).")
        self.input, self.output = inputs[0], outputs[0]
        self.height, self.width = int(self.input["shape"][1]), int(self.input["shape"][2])
        self.num_outputs = int(self.output["shape"][-1])
        self._batch = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n != self._batch:
            self.interpreter.resize_tensor_input(self.input["index"], [n, self.height, self.width, 3])
            with parked_stderr():  # 'Created TensorFlow Lite XNNPACK delegate for CPU.'
                self.interpreter.allocate_tensors()
            self._batch = n
        self.interpreter.set_tensor(self.input["index"], _quantize(batch, self.input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)


def load_tflite(path, height=None, width=None) -> TFLiteClassifier:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"TFLite model '{path}' not found; run retrain.py with --tflite_output first.")
    try:
        model = path.read_bytes()
    except OSError as exc:
        raise UserError(f"TFLite model '{path}' cannot be read ({exc.strerror or exc}).") from None
    try:
        classifier = TFLiteClassifier(path, model)
    except UserError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"'{path}' is not a usable TFLite model: {first_line(exc)}") from None
    for given, own, flag in ((height, classifier.height, "--input_height"), (width, classifier.width, "--input_width")):
        if given is not None and given != own:
            raise UserError(f"The TFLite model '{path}' takes {classifier.height}x{classifier.width} images; "
                            f"{flag}={given} does not fit it (leave it out).")
    return classifier


def _quantize(batch: np.ndarray, detail) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return np.ascontiguousarray(batch, dtype=np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, detail) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values.copy()
    scale, zero_point = detail["quantization"]
    return (values.astype(np.float32) - zero_point) * np.float32(scale)
