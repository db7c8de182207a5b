"""How the network runs: at the chosen precision, on every visible GPU.

``runner()`` turns a module and a precision into the callable that bottleneck
creation feeds batches to.  float32 and bfloat16 run the module's TensorFlow
function (bfloat16 inside ``precision.bfloat16_scope``); int8 runs the
quantized TFLite copy.  With several GPUs each batch is cut into one slice per
device inside a single TensorFlow function, so the slices run at the same time
and the vectors come back in order; on one device (or none) nothing changes.
"""
from __future__ import annotations

import dataclasses
import logging

from .modules import FeatureModule
from .precision import InPrecision, Precision

log = logging.getLogger("retrain")


def with_precision(module: FeatureModule, precision: Precision) -> FeatureModule:
    """The module whose cache identity names the precision (unchanged for float32)."""
    if not precision.cache_suffix:
        return module
    return dataclasses.replace(module, identity=module.identity + precision.cache_suffix)


def float_identity(module: FeatureModule, precision: Precision) -> str:
    """The module's identity without the precision: the network that is quantized for int8."""
    suffix = precision.cache_suffix
    return module.identity[: -len(suffix)] if suffix and module.identity.endswith(suffix) else module.identity


def gpu_devices() -> list[str]:
    import tensorflow as tf

    return [device.name for device in tf.config.list_logical_devices("GPU")]


def spread(fn, devices: list[str], height: int, width: int):
    """A TensorFlow function that runs ``fn`` on one slice of the batch per device and joins the results."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)], autograph=False)
    def on_all(images):
        count = tf.shape(images)[0]
        per_device = (count + len(devices) - 1) // len(devices)
        outputs = []
        for i, device in enumerate(devices):
            with tf.device(device):
                outputs.append(fn(images[i * per_device:(i + 1) * per_device]))
        return tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *outputs)

    return on_all


def runner(module: FeatureModule, precision: Precision, model_dir=None, features=None,
           devices: list[str] | None = None):
    """The callable that maps a float32 batch [N, H, W, 3] to the module's outputs at ``precision``.

    ``features`` replaces the module's own function (fine-tuning's extraction
    gives two outputs); ``devices`` defaults to the visible GPUs.
    """
    if precision.name == "int8":
        from .int8 import Int8Features, module_artifact

        if features is not None:
            raise ValueError("int8 runs the bottleneck alone")
        float_module = dataclasses.replace(module, identity=float_identity(module, precision))
        return Int8Features(module_artifact(float_module, model_dir))
    from .traced import network_fn

    fn = features or network_fn(module)
    devices = gpu_devices() if devices is None else devices
    if len(devices) > 1:
        log.info("Spreading each batch over %d devices: %s.", len(devices), ", ".join(devices))
        fn = spread(fn, devices, module.height, module.width)
    return InPrecision(fn, precision)


def device_count(devices: list[str] | None = None) -> int:
    """How many devices share a batch (at least 1), so each gets a full batch of its own."""
    devices = gpu_devices() if devices is None else devices
    return max(1, len(devices))


def graph_runner(classifier, precision: Precision, model_dir=None, devices: list[str] | None = None):
    """label_image.py's frozen-graph Classifier, run at ``precision`` and over every visible GPU.

    The graph itself stays as retrain.py wrote it (float32); int8 quantizes the
    graph's own network (``Placeholder`` to ``bottleneck``) once and runs only
    the new layer from the graph.
    """
    if precision.name == "int8":
        return _int8_graph(classifier, model_dir)
    devices = gpu_devices() if devices is None else devices
    split = _split_graph(classifier) if precision.name == "bfloat16" else None
    if split is None:  # float32, or a graph without retrain.py's bottleneck tensor: the graph as one function
        fn = classifier.fn
        if len(devices) > 1:
            fn = spread(fn, devices, classifier.height, classifier.width)
        return dataclasses.replace(classifier, fn=InPrecision(fn, precision))
    network, head = split
    if len(devices) > 1:
        network = spread(network, devices, classifier.height, classifier.width)
    # Only the network runs in bfloat16: the new layer and its softmax stay float32, so scores still sum to 1.
    return dataclasses.replace(classifier, fn=_TwoParts(InPrecision(network, precision), head))


class _TwoParts:
    """The network, then the graph's new layer; called like the graph's own function."""

    def __init__(self, network, head):
        self.network, self.head = network, head

    def __call__(self, images):
        return self.head(self.network(images))


def _split_graph(classifier):
    """(network, new layer) cut from a frozen graph at retrain.py's bottleneck tensor; None without one."""
    from .traced import BOTTLENECK_NAME

    if classifier.wrapped is None or BOTTLENECK_NAME not in {node.name for node in classifier.graph_def.node}:
        return None
    graph = classifier.wrapped.graph
    bottleneck = graph.as_graph_element(f"{BOTTLENECK_NAME}:0")
    network = classifier.wrapped.prune(graph.as_graph_element(f"{classifier.input_layer}:0"), bottleneck)
    head = classifier.wrapped.prune(bottleneck, graph.as_graph_element(f"{classifier.output_layer}:0"))
    return network, head


class _Int8Graph(_TwoParts):
    """The int8 network (NumPy in and out) followed by the graph's float new layer."""

    def __call__(self, images):
        import tensorflow as tf

        return self.head(tf.constant(self.network(images.numpy())))


def _int8_graph(classifier, model_dir):
    import hashlib

    import tensorflow as tf

    from ..errors import UserError
    from .int8 import Int8Features, ensure_artifact
    from .traced import BOTTLENECK_NAME
    from .weights import default_model_dir

    split = _split_graph(classifier)
    if split is None:
        raise UserError(f"--precision int8 needs a graph written by retrain.py (with its '{BOTTLENECK_NAME}' "
                        "tensor); use --precision float32 or bfloat16 for this one.")
    network, head = split
    # The network part alone names the artifact: graphs retrained from one network on other classes share it.
    part = tf.compat.v1.graph_util.extract_sub_graph(classifier.graph_def, [BOTTLENECK_NAME])
    digest = hashlib.sha256(part.SerializeToString(deterministic=True)).hexdigest()[:16]
    artifact = ensure_artifact(model_dir or default_model_dir(), f"frozen-graph-network:{digest}", lambda: network,
                               classifier.height, classifier.width)
    return dataclasses.replace(classifier, fn=_Int8Graph(Int8Features(artifact), head))
