"""Multi-label metrics, shared by the run and label_image.py --evaluate: a threshold per label, chosen on the
validation set, and precision, recall, F1 and average precision per label, micro and macro F1, mean AP.

Conventions, as metrics.py's for classes: precision is undefined (NaN) for a
label never said, recall, F1 and average precision for a label no image has;
macro F1 and mean AP average over the labels where they are defined.  Average
precision is the mean, over the images that have the label, of the precision
among the images scored at least as high as each (no interpolation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.5  # a label that no validation image has keeps this one


@dataclass
class Thresholds:
    values: np.ndarray  # [labels] float
    validation_f1: np.ndarray  # [labels]: F1 on the validation set at the chosen threshold, NaN where not chosen
    chosen: np.ndarray  # [labels] bool: chosen on validation (False: DEFAULT_THRESHOLD)


def choose_thresholds(scores: np.ndarray, targets: np.ndarray) -> Thresholds:
    """Each label's threshold: the one that gives the best F1 on these (validation) scores, halfway between the
    lowest score said yes and the highest said no; DEFAULT_THRESHOLD for a label that no image has."""
    scores, truth = np.asarray(scores, np.float64), np.asarray(targets) > 0.5
    num_labels = truth.shape[1] if truth.ndim == 2 else 0
    values = np.full(num_labels, DEFAULT_THRESHOLD)
    f1s = np.full(num_labels, np.nan)
    chosen = np.zeros(num_labels, bool)
    for j in range(num_labels):
        positives = int(truth[:, j].sum())
        if not positives:
            continue
        order = np.argsort(-scores[:, j], kind="stable")
        ranked, hits = scores[order, j], np.cumsum(truth[order, j])
        said = np.arange(1, len(ranked) + 1)
        f1 = 2 * hits / (said + positives)
        # Only a cut between two different scores can be a threshold: ties are said yes or no together.
        cuttable = np.append(ranked[1:] < ranked[:-1], True)
        best = int(np.flatnonzero(cuttable)[np.argmax(f1[cuttable])])
        below = ranked[best + 1] if best + 1 < len(ranked) else 0.0
        values[j], f1s[j], chosen[j] = (ranked[best] + below) / 2, f1[best], True
    return Thresholds(values, f1s, chosen)


def average_precision(scores: np.ndarray, truth: np.ndarray) -> float:
    """AP of one label's scores against its truth (bool); NaN when no image has the label."""
    positives = int(truth.sum())
    if not positives:
        return float("nan")
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    hits = np.cumsum(truth[order])
    precision_at = hits / np.arange(1, len(order) + 1)
    return float(precision_at[truth[order]].sum() / positives)


@dataclass
class LabelMetrics:
    precision: np.ndarray  # [labels], NaN where undefined (as every array below)
    recall: np.ndarray
    f1: np.ndarray
    average_precision: np.ndarray
    support: np.ndarray  # [labels] int: images with the label
    predicted: np.ndarray  # [labels] int: images given the label
    micro: dict  # precision, recall, f1 over every (image, label) pair
    macro_f1: float
    mean_average_precision: float
    all_right: float  # share of images whose every label is right
    count: int  # images

    def as_dict(self, labels: list[str], thresholds: np.ndarray) -> dict:
        """summary.json's multi-label figures."""
        return {
            "count": self.count,
            "micro": self.micro,
            "macro_f1": _number(self.macro_f1),
            "mean_average_precision": _number(self.mean_average_precision),
            "all_labels_right": _number(self.all_right),
            "per_label": {label: {"threshold": round(float(thresholds[j]), 6),
                                  "average_precision": _number(self.average_precision[j])}
                          for j, label in enumerate(labels)},
        }


def label_metrics(scores: np.ndarray, targets: np.ndarray, thresholds) -> LabelMetrics:
    scores, truth = np.asarray(scores, np.float64), np.asarray(targets) > 0.5
    said = scores >= np.asarray(thresholds)
    hits = (said & truth).sum(axis=0).astype(np.float64)
    support, predicted = truth.sum(axis=0), said.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, np.nan)
        recall = np.where(support > 0, hits / support, np.nan)
        f1 = np.where(support > 0, 2 * hits / (support + predicted), np.nan)
    ap = np.array([average_precision(scores[:, j], truth[:, j]) for j in range(truth.shape[1])])
    total_hits, total_said, total_true = hits.sum(), float(predicted.sum()), float(support.sum())
    micro = {"precision": _number(total_hits / total_said) if total_said else None,
             "recall": _number(total_hits / total_true) if total_true else None,
             "f1": _number(2 * total_hits / (total_said + total_true)) if total_said + total_true else None}
    return LabelMetrics(precision, recall, f1, ap, support.astype(np.int64), predicted.astype(np.int64), micro,
                        _nanmean(f1), _nanmean(ap), float((said == truth).all(axis=1).mean()) if len(truth) else
                        float("nan"), len(truth))


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _number(value) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None
