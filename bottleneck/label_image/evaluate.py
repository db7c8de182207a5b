"""label_image.py --evaluate: the true class of each image from its folder, and the evaluation printout
(accuracy, confusion matrix, recall per class, accuracy against coverage)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..training.metrics import confusion_matrix
from .engine import UNKNOWN
from .formats import print_unreadable


def true_labels(inputs: list[str], paths: list[Path], labels: list[str]) -> dict[Path, int]:
    """The class of each image from its folder: <given folder>/<class folder>/.../image."""
    from ..data.walk import label_for_folder

    index = {label: i for i, label in enumerate(labels)}
    roots = [Path(raw) for raw in inputs if Path(raw).is_dir()]
    truth: dict[Path, int] = {}
    unknown: set[str] = set()
    for path in paths:
        root = next((r for r in roots if r in path.parents), None)
        if root is None or path.parent == root:
            raise UserError(f"--evaluate needs images inside class folders, but '{path}' is not in one.")
        folder = path.relative_to(root).parts[0]
        label = label_for_folder(folder)
        if label not in index:
            unknown.add(folder)
            continue
        truth[path] = index[label]
    if unknown:
        raise UserError(f"Class folder(s) {', '.join(sorted(unknown))} match no label of the graph.")
    return truth


def print_evaluation(predictions, truth: dict[Path, int], labels: list[str], threshold: float | None = None) -> int:
    """Print accuracy, the confusion matrix, recall per class and accuracy against coverage; returns how many
    images failed (each also named on stderr)."""
    true, predicted, confidence, failed = [], [], [], 0
    for prediction in predictions:
        if prediction.error is not None:
            failed += 1
            print_unreadable(prediction)
            continue
        true.append(truth[prediction.path])
        predicted.append(labels.index(prediction.top[0][0]))
        confidence.append(prediction.top[0][1])
    if not true:
        raise UserError("No image could be classified, so there is nothing to evaluate.")
    true_a, pred_a = np.array(true), np.array(predicted)
    print(f"Accuracy = {(true_a == pred_a).mean() * 100:.1f}% (N={len(true)})")
    matrix = confusion_matrix(true_a, pred_a, len(labels))
    width = max(8, *(len(label) for label in labels))
    print("Confusion matrix (rows: true class, columns: predicted):")
    print(" " * width + "".join(f" {label[:width]:>{width}}" for label in labels))
    for i, label in enumerate(labels):
        print(f"{label[:width]:<{width}}" + "".join(f" {v:>{width}}" for v in matrix[i]))
    for i, label in enumerate(labels):
        support = matrix[i].sum()
        if support:
            print(f"{label}: recall {matrix[i, i] / support * 100:.1f}% ({matrix[i, i]}/{support})")
    from ..training.calibration import COVERAGE_THRESHOLDS, coverage_table

    thresholds = sorted(set(COVERAGE_THRESHOLDS) | ({threshold} if threshold is not None else set()))
    print(f"Accuracy against coverage (an image is answered when its best score >= the threshold, "
          f"else '{UNKNOWN}'):")
    print(f"{'threshold':>9} {'answered':>9} {'accuracy':>9}")
    for row in coverage_table(np.array(confidence), true_a == pred_a, thresholds):
        accuracy = "n/a" if row["accuracy"] is None else f"{row['accuracy'] * 100:.1f}%"
        print(f"{row['threshold']:>9.2f} {row['coverage'] * 100:>8.1f}% {accuracy:>9} ({row['answered']}/{len(true)})")
    return failed
