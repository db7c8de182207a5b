"""The fine-tuned top of the network in use: cached activations through the tuned blocks and the new layer.

``ActivationSet`` reads one set's activations at the cut from the cache a batch
at a time; ``classify`` turns them into class probabilities; ``tuned_module`` is
the feature module whose top blocks carry the fine-tuned weights, which every
export then traces.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..cache.store import BottleneckCache, Entry
from ..model import inception_v3
from ..model.modules import FeatureModule
from .layer import TrainedLayer


@dataclass
class ActivationSet:
    """One set's cached activations at the cut, read from the cache a batch at a time."""

    cache: BottleneckCache
    entries: list[Entry]
    y: np.ndarray  # [N] class indices
    shape: tuple[int, int, int]  # of one image's activations

    def rows(self, indices) -> np.ndarray:
        flat = self.cache.fetch([self.entries[i] for i in indices])
        return flat.reshape((len(flat),) + self.shape)


def infer_set(infer, data: ActivationSet, batch_size: int) -> np.ndarray:
    """``infer`` (a batch of activations -> [batch, C]) over the whole set, ``batch_size`` images at a time."""
    chunks = [infer(data.rows(range(start, min(start + batch_size, len(data.y))))).numpy()
              for start in range(0, len(data.y), batch_size)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def classify(weights: dict[str, np.ndarray], blocks: int, layer: TrainedLayer, data: ActivationSet,
             top: str = inception_v3.CLASSIC_TOP_BLOCK, batch_size: int = 32) -> np.ndarray:
    """Class probabilities for cached activations through (fine-tuned) top blocks and layer."""
    import tensorflow as tf

    _lower, upper = inception_v3.split_network(weights, blocks, top=top)

    @tf.function(input_signature=[tf.TensorSpec([None, *data.shape], tf.float32)], autograph=False)
    def infer(activations):
        return tf.nn.softmax(tf.matmul(upper(activations), layer.weights) + layer.biases)

    return infer_set(infer, data, batch_size)


def tuned_module(module: FeatureModule, weights: dict[str, np.ndarray], blocks: int) -> FeatureModule:
    """The feature module whose top blocks carry the fine-tuned weights, for every export."""
    names = inception_v3.tuned_parameter_names(weights, blocks, module.top_block)
    return dataclasses.replace(
        module,
        identity=module.tuned_identity("fine-tuned", weights, names),
        features=inception_v3.build_feature_fn(weights, module.top_block),
        weights=weights,
        classic_cache_suffixes=(),
    )
