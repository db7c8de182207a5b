"""A multi-label run's phases after the sets: its targets, its training, its test, and what the log and summary say.

The spine (pipeline.py) calls these in place of the single-label ones when
--multi_label is given.  The scores are sigmoids, not a softmax, so no
temperature is fitted: each label gets its own threshold on the validation set
instead (multi_label_metrics.choose_thresholds), and the test is measured at
those thresholds.  A run's "accuracy" (the curves, the test, the
--assert_accuracy_at_least gate) is the share of images whose every label is
right; micro and macro F1 and mean average precision are logged beside it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..cache.sets import SplitData
from ..console.notes import bounded
from ..data.multi_label import targets as targets_of
from ..data.names import name_fields
from ..data.split import SETS, ClassSplit
from .calibration import Calibration, Scored
from .evaluate import FinalTest
from .multi_label import sigmoid, train_multi_label_layer
from .multi_label_metrics import LabelMetrics, Thresholds, choose_thresholds, label_metrics
from .numerics import layer_logits

log = logging.getLogger("retrain")

NO_TEMPERATURE = "no temperature for sigmoid scores: each label has its own threshold, chosen on the validation set"


@dataclass
class MultiLabelTest:
    labels: list[str]
    thresholds: Thresholds
    test: LabelMetrics
    validation: LabelMetrics | None
    misclassified: list[tuple[str, list[str], list[str]]]  # path, its labels, the labels said

    def summary_fields(self) -> dict:
        """What summary.json says per label instead of per class (build_summary puts these over its own)."""
        t = self.test
        per_label = {}
        for j, label in enumerate(self.labels):
            per_label[label] = {"precision": _number(t.precision[j]), "recall": _number(t.recall[j]),
                                "f1": _number(t.f1[j]), "support": int(t.support[j]), "predicted": int(t.predicted[j]),
                                "threshold": round(float(self.thresholds.values[j]), 6),
                                "average_precision": _number(t.average_precision[j])}
        return {
            "accuracy": {"test": _number(t.all_right), "test_count": t.count},
            "per_class": per_label,
            "macro_average": {"precision": _mean(t.precision), "recall": _mean(t.recall), "f1": _number(t.macro_f1)},
            "misclassified": [{**name_fields(path), "true": truth, "predicted": said}
                              for path, truth, said in self.misclassified],
            "multi_label": {
                "accuracy_means": "every label of the image right",
                "thresholds": {label: round(float(v), 6) for label, v in zip(self.labels, self.thresholds.values)},
                "thresholds_chosen_on_validation": {label: bool(c) for label, c in
                                                    zip(self.labels, self.thresholds.chosen)},
                "test": t.as_dict(self.labels, self.thresholds.values),
                "validation": self.validation.as_dict(self.labels, self.thresholds.values) if self.validation else None,
            },
        }


def set_targets(data: dict[str, SplitData], splits: list[ClassSplit]) -> dict[str, np.ndarray]:
    """set name -> [rows, labels] targets of the sets' rows (a row's image has the label of splits[j])."""
    return {name: targets_of(data[name].names, splits) for name in SETS}


def train(data: dict[str, SplitData], targets: dict[str, np.ndarray], settings, summaries, on_step, store_every):
    return train_multi_label_layer(data["training"], targets["training"], data["validation"], targets["validation"],
                                   settings, summaries, on_step, store_every=store_every)


def evaluate(layer, test: SplitData, test_targets: np.ndarray, validation: SplitData, validation_targets: np.ndarray,
             labels: list[str], testing_percentage: float, print_misclassified: bool
             ) -> tuple[Scored, FinalTest, MultiLabelTest]:
    """Choose the thresholds on validation, measure the test at them and log both; returns what the rest of the run
    reads (scores without a temperature, the test's accuracy) and the multi-label figures."""
    validation_scores = sigmoid(layer_logits(layer, validation.x))
    test_scores = sigmoid(layer_logits(layer, test.x))
    thresholds = choose_thresholds(validation_scores, validation_targets)
    unchosen = [label for label, chosen in zip(labels, thresholds.chosen) if not chosen]
    log.info("Thresholds chosen on %d validation images for the best F1 of each label%s.", len(validation_targets),
             f"; {len(unchosen)} label(s) without a validation image keep 0.5: {', '.join(unchosen)}" if unchosen
             else "")
    validation_metrics = label_metrics(validation_scores, validation_targets, thresholds.values) \
        if len(validation_targets) else None
    scored = Scored(Calibration(1.0, False, NO_TEMPERATURE, len(validation_targets)), validation_scores,
                    test_scores, Calibration(1.0, False, NO_TEMPERATURE, len(validation_targets)).as_dict())
    metrics = label_metrics(test_scores, test_targets, thresholds.values)
    said = test_scores >= thresholds.values
    truth = test_targets > 0.5
    wrong = [(test.names[i], _names(labels, truth[i]), _names(labels, said[i]))
             for i in np.flatnonzero((said != truth).any(axis=1))]
    empty = np.zeros(0, np.int64)
    if not len(test_targets):
        log.warning("No test images (--testing_percentage %s): no final test accuracy.", testing_percentage)
        return scored, FinalTest(empty, empty, [], None, []), MultiLabelTest(labels, thresholds, metrics,
                                                                               validation_metrics, [])
    log.info("Final test accuracy = %.1f%% (N=%d; every label right)", metrics.all_right * 100, metrics.count)
    log.info("Multi-label test: micro F1 = %s, macro F1 = %s, mean average precision = %s (N=%d)",
             _shown(metrics.micro["f1"]), _shown(metrics.macro_f1), _shown(metrics.mean_average_precision),
             metrics.count)
    lines = [f"Label '{label}': threshold {thresholds.values[j]:.3f}, test precision {_shown(metrics.precision[j])}, "
             f"recall {_shown(metrics.recall[j])}, F1 {_shown(metrics.f1[j])}, average precision "
             f"{_shown(metrics.average_precision[j])} ({metrics.support[j]} test image(s) with it)"
             for j, label in enumerate(labels)]
    for line in bounded(lines, "labels (all in summary.json)"):
        log.info(line)
    if print_misclassified:
        log.info("=== MISCLASSIFIED TEST IMAGES ===")
        for path, _truth, guess in wrong:
            log.info("%70s  %s", path, " | ".join(guess))
    misclassified = [(path, " | ".join(t), " | ".join(s)) for path, t, s in wrong]
    return (scored, FinalTest(empty, empty, [], metrics.all_right, misclassified),
            MultiLabelTest(labels, thresholds, metrics, validation_metrics, wrong))


def _names(labels: list[str], row: np.ndarray) -> list[str]:
    return [labels[j] for j in np.flatnonzero(row)]


def _number(value) -> float | None:
    value = float(value)
    return round(value, 6) if np.isfinite(value) else None


def _mean(values: np.ndarray) -> float | None:
    return _number(np.nanmean(values)) if np.isfinite(values).any() else None


def _shown(value) -> str:
    return "n/a" if value is None or not np.isfinite(float(value)) else f"{float(value):.3f}"
