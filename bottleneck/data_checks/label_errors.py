"""Suspected label errors: images whose folder label a layer that never saw them disputes.

Every image (training, validation and test) gets a prediction from a new layer
trained on the other folds (k-fold, out of fold), so no image is judged by a
layer that saw it.  Images whose folder label that layer disputes are ranked by
how much more probable it finds its own answer than the folder label.  Copies
with the same content always share a fold, or a copy would vouch for itself.

A fold whose other folds hold nothing to train on, or fewer than two classes,
trains no layer, and an image whose class its fold's layer never saw is not
judged either (that layer could only dispute it): such images get no
prediction (NaN rows), are never reported, and ``unjudged_note`` says so.

The new layer here is trained in NumPy as ``training.layer`` trains it
(class-balanced batches, here Adam), with a fixed number of steps per fold, so
the cost does not grow with the number of images beyond one prediction per image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.settings import TrainSettings
from ..training.layer import balanced_sampler, optimizer_update, truncated_normal
from ..training.numerics import CHUNK, softmax
from .all_images import AllImages

FOLDS = 5
FOLD_STEPS = 200  # per fold, class-balanced batches of FOLD_BATCH
FOLD_BATCH = 100
FOLD_LEARNING_RATE = 0.003


@dataclass
class LabelError:
    path: str
    set: str
    label: str
    suggested: str
    label_probability: float
    suggested_probability: float

    @property
    def margin(self) -> float:
        return self.suggested_probability - self.label_probability


def assign_folds(y: np.ndarray, digests: list[str], folds: int, seed: int) -> np.ndarray:
    """A fold per image, stratified by class; images with the same content share a fold."""
    rng = np.random.default_rng(seed)
    fold = np.full(len(y), -1, np.int64)
    fold_of_digest: dict[str, int] = {}
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        rows = rows[rng.permutation(len(rows))]
        next_fold = int(rng.integers(folds))
        for r in rows:
            d = digests[r]
            if d not in fold_of_digest:
                fold_of_digest[d] = next_fold
                next_fold = (next_fold + 1) % folds
            fold[r] = fold_of_digest[d]
    return fold


def fit_layer(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int, steps: int = FOLD_STEPS,
              batch: int = FOLD_BATCH, learning_rate: float = FOLD_LEARNING_RATE):
    """A softmax layer trained as training.layer trains it (balanced batches, here Adam); returns (weights, biases)."""
    rng = np.random.default_rng(seed)
    weights = truncated_normal(rng, (x.shape[1], num_classes), 0.001)
    biases = np.zeros(num_classes, np.float32)
    update = optimizer_update(TrainSettings(optimizer="adam", learning_rate=learning_rate), [weights, biases])
    sample = balanced_sampler(y, num_classes, rng)
    eye = np.eye(num_classes, dtype=np.float32)
    for step in range(steps):
        rows = sample(batch)
        xb = x[rows].astype(np.float32, copy=False)
        delta = (softmax(xb @ weights + biases) - eye[y[rows]]) / len(rows)
        update([xb.T @ delta, delta.sum(axis=0)], step)
    return weights, biases


def out_of_fold(images: AllImages, num_classes: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """[N, C] probabilities of each image from a layer trained on the other folds; NaN rows for images not judged
    (a fold with nothing to train on or fewer than two classes, or a class the fold's layer never saw)."""
    from threadpoolctl import threadpool_limits

    fold = assign_folds(images.y, images.digests, folds, seed)
    out = np.full((len(images.y), num_classes), np.nan, np.float32)
    with threadpool_limits(limits=1, user_api="blas"):  # tiny products: threads only add waiting
        for k in range(folds):
            held = fold == k
            trained_classes = np.unique(images.y[~held])
            if not held.any() or len(trained_classes) < 2:
                continue
            weights, biases = fit_layer(images.x[~held], images.y[~held], num_classes, seed + k)
            judged = np.flatnonzero(held & np.isin(images.y, trained_classes))
            for start in range(0, len(judged), CHUNK):
                rows = judged[start:start + CHUNK]
                out[rows] = softmax(images.x[rows].astype(np.float32) @ weights + biases)
    return out


def judged_rows(probabilities: np.ndarray) -> np.ndarray:
    """Which images out_of_fold judged (the others have NaN rows)."""
    return ~np.isnan(probabilities).any(axis=1)


def unjudged_note(probabilities: np.ndarray) -> str:
    """A sentence on the images out_of_fold could not judge, or "" when it judged all of them."""
    judged = judged_rows(probabilities)
    if judged.all():
        return ""
    if not judged.any():
        return ("No image was judged for label errors: no fold had other folds with images of two classes or "
                "more to train on (copies of one content always share a fold), so there was nothing to train on.")
    return (f"{int((~judged).sum())} image(s) were not judged for label errors: their fold had nothing to train on, "
            "fewer than two classes, or no image of their own class elsewhere (copies of one content always share "
            "a fold).")


def rank_label_errors(images: AllImages, probabilities: np.ndarray, labels: list[str]) -> list[LabelError]:
    """Images whose out-of-fold prediction is not their folder label, most confidently disputed first."""
    n = len(images.y)
    judged = judged_rows(probabilities)
    suggested = np.where(judged[:, None], probabilities, 0.0).argmax(axis=1)
    rows = np.arange(n)
    p_label = probabilities[rows, images.y]
    p_suggested = probabilities[rows, suggested]
    disputed = np.flatnonzero((suggested != images.y) & judged)
    order = disputed[np.argsort(-(p_suggested[disputed] - p_label[disputed]), kind="stable")]
    return [LabelError(images.paths[i], images.sets[i], labels[images.y[i]], labels[suggested[i]],
                       float(p_label[i]), float(p_suggested[i])) for i in order]
