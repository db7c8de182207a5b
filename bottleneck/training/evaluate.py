"""The final test: accuracy on the test set, the misclassified images, and the accuracy gate of cron jobs."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..cache.sets import SplitData
from ..errors import EXIT_FAILURE, UserError

log = logging.getLogger("retrain")


@dataclass
class FinalTest:
    true: np.ndarray  # [N] class indices
    predicted: np.ndarray  # [N] class indices
    names: list[str]  # image paths
    accuracy: float | None  # None without test images
    misclassified: list[tuple[str, str, str]]  # path, true label, predicted label


def pick_test_images(test: SplitData, test_batch_size: int, seed: int | None) -> tuple[SplitData, np.ndarray]:
    """The test images the final accuracy is measured on (--test_batch_size of them, -1: all), and their rows."""
    pick = np.arange(len(test.y))
    if 0 <= test_batch_size < len(test.y):
        pick = np.random.default_rng(seed).choice(len(test.y), test_batch_size, replace=False)
        test = SplitData(test.x[pick], test.y[pick], [test.names[i] for i in pick])
    return test, pick


def final_test(test: SplitData, probabilities: np.ndarray, labels: list[str], testing_percentage: float,
               print_misclassified: bool) -> FinalTest:
    """Log the final test accuracy, and the misclassified images when asked to."""
    predicted = probabilities.argmax(axis=1)
    if not len(test.y):
        log.warning("No test images (--testing_percentage %s): no final test accuracy.", testing_percentage)
        return FinalTest(test.y, predicted, test.names, None, [])
    accuracy = float((predicted == test.y).mean())
    log.info("Final test accuracy = %.1f%% (N=%d)", accuracy * 100, len(test.y))
    misclassified = [(test.names[i], labels[test.y[i]], labels[predicted[i]])
                     for i in np.flatnonzero(predicted != test.y)]
    if print_misclassified:
        log.info("=== MISCLASSIFIED TEST IMAGES ===")
        for name, _truth, guess in misclassified:
            log.info("%70s  %s", name, guess)
    return FinalTest(test.y, predicted, test.names, accuracy, misclassified)


def check_accuracy_gate(accuracy: float | None, at_least: float | None) -> None:
    """Fail the run (exit 1, before any output is replaced) below --assert_accuracy_at_least."""
    if at_least is None or (accuracy is not None and accuracy * 100 >= at_least):
        return
    shown = "not measured (no test images)" if accuracy is None else f"{accuracy * 100:.1f}%"
    raise UserError(
        f"Final test accuracy {shown} is below --assert_accuracy_at_least {at_least:g}%; "
        "the previous outputs were left untouched.",
        exit_code=EXIT_FAILURE,
    )
