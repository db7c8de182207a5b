"""Grad-CAM: where in an image the network found the evidence for a class.

The network is cut at its last convolutional block, the grid of features that
is pooled into the bottleneck.  For a class, the gradient of its score (the new
layer's logit) with respect to that grid, averaged over the grid's positions,
weighs each channel; the weighted sum of the channels, clipped at zero, is the
heatmap (Selvaraju et al., "Grad-CAM", 2017).  Where the bottleneck is the
grid's average, as in Inception-v3, this is exactly the class activation map.

Which modules can be cut:

* the built-in Inception-v3 (fine-tuned or not), at the block that
  ``--bottleneck_layer`` averages (``inception_v3.split_network``);
* a SavedModel or TF-Hub module that carries two more functions,
  ``feature_map(images) -> [N, h, w, C]`` and
  ``bottleneck_from_feature_map(grid) -> [N, D]``, whose composition is its
  own call.  A restored module's call is one opaque function, so its inner
  grid cannot be reached any other way.

The grid runs at the run's precision (bfloat16 inside ``bfloat16_scope``); int8
runs in TensorFlow Lite, which has no gradients, so its heatmaps run in float32.
``feature_grids`` runs the network and ``grad_cam`` needs only its grids and the
new layer, so grids kept from an earlier run make heatmaps without the network.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import inception_v3
from .modules import FeatureModule
from .precision import InPrecision, Precision

# The functions a SavedModel module offers for heatmaps (see the module docstring).
FEATURE_MAP = "feature_map"
FROM_FEATURE_MAP = "bottleneck_from_feature_map"


@dataclass(frozen=True)
class CutNetwork:
    """A module cut at its last convolutional block."""

    to_grid: Callable  # float32 images [N, H, W, 3] in [0, 1] -> [N, h, w, C]
    from_grid: Callable  # [N, h, w, C] -> the bottleneck [N, D]
    where: str  # the grid, in words, for the log and the page


class _BuiltInGrid:
    """Inception-v3 up to the top block's grid, built on its first call: a run whose grids are all kept from an
    earlier one never pays for it."""

    def __init__(self, module: FeatureModule):
        self.module, self.fn = module, None

    def __call__(self, images):
        import tensorflow as tf

        if self.fn is None:
            module = self.module
            # The arrays go in as tensors captured by the function, not as constants inside its graph: tracing
            # and optimising a graph that holds every weight costs seconds, which a few images do not repay.
            arrays = {name: tf.constant(value) for name, value in module.weights.items()
                      if name.endswith(("/kernel", "/bias"))}
            lower, _upper = inception_v3.split_network(module.weights, tuned_blocks=0, params=arrays,
                                                       top=module.top_block)
            self.fn = tf.function(lower, autograph=False, input_signature=[
                tf.TensorSpec([None, module.height, module.width, 3], tf.float32)])
        return self.fn(images)


def cut_network(module: FeatureModule) -> tuple[CutNetwork | None, str]:
    """The module cut at its last convolutional block and where; or None and why it cannot be."""
    import tensorflow as tf

    if module.weights is not None:  # the built-in network, fine-tuned or not
        # Its upper part, the average over the grid, holds no weights: cheap to make whatever the grids' origin.
        _lower, upper = inception_v3.split_network(module.weights, tuned_blocks=0, top=module.top_block)
        return CutNetwork(_BuiltInGrid(module), upper, f"Inception-v3's {module.top_block} grid"), ""
    owner = getattr(module.features, "owner", None)
    to_grid, from_grid = getattr(owner, FEATURE_MAP, None), getattr(owner, FROM_FEATURE_MAP, None)
    if not (callable(to_grid) and callable(from_grid)):
        return None, (f"the module {module.spec} is one opaque function without '{FEATURE_MAP}' and "
                      f"'{FROM_FEATURE_MAP}' functions, so its last convolutional block cannot be reached")
    grid = to_grid(tf.zeros([1, module.height, module.width, 3]))
    if len(grid.shape) != 4:
        return None, f"the module {module.spec}'s {FEATURE_MAP} gives shape {list(grid.shape)}, not [N, h, w, C]"
    return CutNetwork(to_grid, from_grid, f"the module's {FEATURE_MAP} ({grid.shape[1]}x{grid.shape[2]} grid)"), ""


def feature_grids(network: CutNetwork, images: np.ndarray, precision: Precision) -> np.ndarray:
    """float32 [N, h, w, C]: the grids of ``images`` [N, H, W, 3], at ``precision`` (float32 for int8)."""
    import tensorflow as tf

    run_as = precision if precision.name != "int8" else Precision("float32", "int8 has no gradients")
    return tf.cast(InPrecision(network.to_grid, run_as)(tf.constant(images, tf.float32)), tf.float32).numpy()


def grad_cam(network: CutNetwork, grids: np.ndarray, weights: np.ndarray, biases: np.ndarray,
             targets: np.ndarray) -> np.ndarray:
    """Heatmaps [T, N, h, w] in [0, 1] of ``targets`` [T, N] (a class index per grid for each of T maps).

    ``grids`` are ``feature_grids``' output; ``weights`` [D, C] and ``biases`` [C] are the new layer's.
    Each map is scaled so its peak is 1 (a map with no positive evidence stays 0).
    """
    import tensorflow as tf

    grid = tf.constant(grids, tf.float32)
    targets = np.asarray(targets, dtype=np.int32).reshape(-1, len(grids))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(grid)
        logits = tf.matmul(tf.cast(network.from_grid(grid), tf.float32), weights) + biases
        scores = [tf.reduce_sum(tf.gather(logits, t, axis=1, batch_dims=1)) for t in targets]
    maps = []
    for score in scores:
        channel_weights = tf.reduce_mean(tape.gradient(score, grid), axis=[1, 2], keepdims=True)
        maps.append(tf.nn.relu(tf.reduce_sum(channel_weights * grid, axis=-1)).numpy())
    del tape
    maps = np.stack(maps) if maps else np.zeros((0, len(grids)) + tuple(grid.shape[1:3]), np.float32)
    peak = maps.max(axis=(2, 3), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0).astype(np.float32)
