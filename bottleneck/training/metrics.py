"""Classification metrics shared by the run report and label_image.py --evaluate."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def confusion_matrix(true, predicted, num_classes: int) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts; rows are true classes, columns predictions."""
    true = np.asarray(true, dtype=np.int64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.int64).reshape(-1)
    if true.shape != predicted.shape:
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predictions.")
    for name, values in (("true", true), ("predicted", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"A {name} class index is outside 0..{num_classes - 1}.")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def per_class_metrics(true, predicted, num_classes: int) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` (float, NaN where undefined), ``support``, ``predicted``.

    Precision is undefined for a class never predicted, recall (and F1) for a
    class absent from ``true``.  A class present but never predicted has
    recall 0 and F1 0.
    """
    matrix = confusion_matrix(true, predicted, num_classes)
    hits = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_count > 0, hits / predicted_count, np.nan)
        recall = np.where(support > 0, hits / support, np.nan)
        p = np.nan_to_num(precision, nan=0.0)
        f1 = np.where(support > 0, np.where(p + recall > 0, 2 * p * recall / (p + recall), 0.0), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": predicted_count}


def matrix_from_summary(summary: Mapping[str, Any]) -> np.ndarray:
    """The confusion matrix of a summary.json, whichever of its two forms it holds: every count, or (for
    many classes, to keep the file proportionate) only the non-zero cells as [true, predicted, count]."""
    n = len(summary["labels"])
    entry = summary["confusion_matrix"]
    if "counts" in entry:
        return np.asarray(entry["counts"], dtype=np.int64).reshape(n, -1)
    matrix = np.zeros((n, n), dtype=np.int64)
    for i, j, count in entry["cells"]:
        matrix[i, j] = count
    return matrix
