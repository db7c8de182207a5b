"""The feature network with trainable weights, for fine-tuning all of it, and the module that carries the result.

``trainable_network`` turns a feature module into float32 master variables and
a forward function that reads them at a chosen compute precision:

- the built-in Inception-v3 gets a variable for every kernel and bias below
  its bottleneck block, and is rebuilt by ``inception_v3.split_network`` with
  those variables in place of the stored arrays.  Its batch normalisation was
  folded into the convolutions when the model was converted, so its
  statistics stay frozen whatever is trained -- the setting recommended for
  small data sets, where a batch of a few images estimates them badly.  In
  bfloat16 the variables and images are cast on the way in, and the features
  cast back to float32, so the weights stay float32 (mixed precision).
- a SavedModel or TF-Hub module trains the variables it marks trainable
  (TF-Hub's ``trainable_variables``, else those its function captures), in
  float32, and with its batch normalisation as its function was saved.

``tuned_module`` is the feature module whose weights are the tuned values,
under an identity of its own, so that its vectors never share a cache key
with the original network's.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from . import inception_v3
from .modules import FeatureModule, _KeepAlive

STEM = ("conv", "conv_1", "conv_2", "conv_3", "conv_4")


@dataclass
class TrainableNetwork:
    names: list[str]  # one per variable, stable across runs (checkpoints are keyed by them)
    variables: list  # tf.Variable, float32: the master weights
    forward: Callable  # (images float32 [N, H, W, 3] in [0, 1], compute dtype) -> float32 features [N, D]
    bfloat16: bool  # whether forward can compute in bfloat16

    def values(self) -> dict[str, np.ndarray]:
        return {name: v.numpy() for name, v in zip(self.names, self.variables)}

    def assign(self, values: dict[str, np.ndarray]) -> None:
        for name, v in zip(self.names, self.variables):
            v.assign(values[name])


def builtin_parameter_names(weights: dict[str, np.ndarray], top: str, blocks: int = 0) -> list[str]:
    """Every kernel and bias that the network up to ``top`` uses, or those of its top ``blocks`` mixed blocks."""
    if blocks:
        used = set(inception_v3.tuned_blocks_below(top, blocks))
    else:
        used = set(STEM) | set(inception_v3.BLOCKS[:inception_v3.BLOCKS.index(top) + 1])
    return sorted(k for k in weights if k.endswith(("/kernel", "/bias")) and k.split("/")[0] in used)


def trainable_network(module: FeatureModule, blocks: int = 0) -> TrainableNetwork:
    """The module's weights as variables: all of them, or (built-in network only) its top ``blocks`` mixed blocks',
    the rest staying constants through which no gradient is computed."""
    import tensorflow as tf

    if module.weights is not None:
        names = builtin_parameter_names(module.weights, module.top_block, blocks)
        variables = [tf.Variable(module.weights[n], name=n.replace("/", "_")) for n in names]

        def forward(images, dtype=tf.float32):
            params = {n: (v if dtype == tf.float32 else tf.cast(v, dtype)) for n, v in zip(names, variables)}
            lower, upper = inception_v3.split_network(module.weights, 0, params, module.top_block)
            return tf.cast(upper(lower(tf.cast(images, dtype))), tf.float32)

        return TrainableNetwork(names, variables, forward, bfloat16=True)

    assert not blocks, "--network_blocks is the built-in network's (config/checks.py)"
    variables = _module_variables(getattr(module.features, "owner", None))
    if not variables:
        raise UserError(f"--fine_tune_network needs a network with trainable weights, and '{module.spec}' has none; "
                        "use the built-in --tfhub_module inception_v3, or a module saved with trainable variables.")

    def forward_saved(images, dtype=tf.float32):
        return module.features(images)  # float32: a saved function's arithmetic is fixed when it is saved

    names = [f"{i}:{v.name}" for i, v in enumerate(variables)]
    return TrainableNetwork(names, variables, forward_saved, bfloat16=False)


def _module_variables(owner) -> list:
    """A loaded module's trainable variables: TF-Hub's list where it has one, else what its function captures."""
    if owner is None:
        return []
    listed = getattr(owner, "trainable_variables", None)
    if listed:
        return list(listed)
    found, seen = [], set()
    for fn in getattr(getattr(owner, "__call__", None), "concrete_functions", []) or []:  # noqa: B004
        for v in fn.trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def tuned_module(module: FeatureModule, network: TrainableNetwork) -> FeatureModule:
    """The feature module that computes with the network's current (tuned) values, for every export."""
    values = network.values()
    identity = module.tuned_identity("network-tuned", values, network.names)
    if module.weights is not None:
        weights = {**module.weights, **values}
        return dataclasses.replace(module, identity=identity, weights=weights, classic_cache_suffixes=(),
                                   features=inception_v3.build_feature_fn(weights, module.top_block))
    # A loaded module's variables now hold the tuned values; a new wrapper makes every export trace it afresh.
    owner = getattr(module.features, "owner", None)
    return dataclasses.replace(module, identity=identity, classic_cache_suffixes=(),
                               features=_KeepAlive(module.features, owner))
