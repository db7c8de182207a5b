"""summary.json, and the report folder it completes.

``write_report(report_dir, data)`` writes, each atomically:

* the two plots (plots.py);
* with the data checks, ``suspected_label_errors.csv`` and ``duplicates.csv``
  (data_checks/findings.py), and with a page, ``report.html`` (page.py), with
  the views made first when asked for (views.py: heatmaps, the data map, and
  TensorBoard's projector in --summaries_dir);
* ``summary.json`` - settings, module, counts, skipped images, accuracies, per-class
  precision/recall/F1, misclassified test images, phase timings, calibration and the
  data checks' findings (written last, so its presence means the report is complete).

All of them land together or none does (atomic.all_or_nothing), and file names are
written by data/names.py's rule.  The report folder's files are the tool's: one that
an earlier run wrote and this run does not (the data checks' CSV files after
--skip_data_checks) is removed with them, so no stale file sits beside a new report;
files of other names are never touched.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import all_or_nothing, remove_atomic, write_text_atomic
from ..data.names import is_utf8, name_fields
from ..data.split import SETS
from ..data_checks.findings import DUPLICATES_CSV, LABEL_ERRORS_CSV, Findings, summary_of, write_csvs
from ..errors import EXIT_FAILURE, UserError
from ..extraction.batches import Skipped
from ..model.modules import FeatureModule
from ..training.layer import EvalPoint
from ..training.metrics import confusion_matrix, per_class_metrics
from .page import PAGE_FILE, PageData, write_page
from .plots import CONFUSION_FILE, CURVES_FILE, series, write_plots
from .views import ViewInputs, build_views

SUMMARY_FORMAT = "bottleneck-report/1"
SUMMARY_FILE = "summary.json"
# Up to this many classes summary.json holds the whole confusion matrix ("counts"); beyond, only its
# non-zero cells ("cells": [true, predicted, count]), so a thousand classes do not write a million zeros.
DENSE_MATRIX_UP_TO = 100

# Over-fitting rule (see overfitting_warning).
OVERFIT_MIN_DROP = 0.03  # validation must fall by at least 3 points...
OVERFIT_SIGMAS = 2.0  # ...and by more than twice its sampling noise
OVERFIT_MIN_POINTS = 4  # evaluations in each compared window
OVERFIT_TRAIN_HIGH = 0.99


@dataclass
class ReportData:
    """Everything the report needs from one run.

    ``test_true``/``test_predicted`` are class indices into ``labels``; ``test_names`` the matching image
    paths.  Accuracies left as None are derived: train and validation from the last evaluation in
    ``history``, test from the test indices.
    """

    labels: list[str]
    history: list[EvalPoint]
    test_true: np.ndarray
    test_predicted: np.ndarray
    test_names: list[str]
    counts: dict[str, dict[str, int]]  # label -> set -> images
    skipped: list[Skipped]
    settings: dict[str, Any]  # flag -> value (RetrainConfig.flags())
    module: FeatureModule
    timings: dict[str, float]  # phase -> seconds
    train_accuracy: float | None = None
    validation_accuracy: float | None = None
    test_accuracy: float | None = None
    fine_tune: dict | None = None  # what fine-tuning did, when it ran
    network_fine_tune: dict | None = None  # what fine-tuning the whole network did, when it ran
    calibration: dict | None = None  # temperature, calibration error, accuracy against coverage
    findings: Findings | None = None  # when the data checks ran
    page: PageData | None = None  # with it, report.html is written too
    views: ViewInputs | None = None  # with it and a page, the page shows heatmaps and a data map
    multi_label: dict | None = None  # a multi-label run's figures per label (training/multi_label_run.py)
    model_selection: dict | None = None  # --preset auto: the table and the setting chosen (training/model_selection.py)


# ---------------------------------------------------------------------------------------------
# Over-fitting


def overfitting_warning(history: list[EvalPoint]) -> str | None:
    """A sentence when training accuracy keeps up while validation accuracy falls late in training.

    Rule, robust to the noise of batch-sized evaluations: take the evaluations
    that have a validation accuracy, in step order; in their second half compare
    the mean over its first third (window A) with the mean over its last third
    (window B).  Warn when validation fell by at least 3 points and by more
    than twice the binomial standard error of that difference (from the
    validation counts), while training accuracy did not fall (B >= A) or
    stayed at 99% or more.  Each window needs at least 4 evaluations.
    """
    points = [(int(p.step), _finite(p.train_accuracy), _finite(p.validation_accuracy), int(p.validation_count or 0))
              for p in history]
    points = sorted((p for p in points if p[1] is not None and p[2] is not None), key=lambda p: p[0])
    late = points[len(points) // 2 :]
    third = len(late) // 3
    if third < OVERFIT_MIN_POINTS:
        return None
    a, b = late[:third], late[-third:]
    train_a, train_b = (float(np.mean([p[1] for p in w])) for w in (a, b))
    val_a, val_b = (float(np.mean([p[2] for p in w])) for w in (a, b))
    drop = val_a - val_b
    n_a, n_b = (sum(p[3] for p in w) for w in (a, b))
    if n_a > 0 and n_b > 0:
        noise = math.sqrt(val_a * (1 - val_a) / n_a + val_b * (1 - val_b) / n_b)
    else:
        noise = 0.0
    if drop < max(OVERFIT_MIN_DROP, OVERFIT_SIGMAS * noise):
        return None
    if not (train_b >= train_a or train_b >= OVERFIT_TRAIN_HIGH):
        return None
    return (
        f"Possible over-fitting: between steps {a[0][0]} and {b[-1][0]} validation accuracy fell from "
        f"{val_a * 100:.1f}% to {val_b * 100:.1f}% while training accuracy went from {train_a * 100:.1f}% to "
        f"{train_b * 100:.1f}%; consider fewer --how_many_training_steps or more training images."
    )


# ---------------------------------------------------------------------------------------------
# JSON


def _finite(value) -> float | None:
    """A number as a float; None when it is missing, NaN or infinite (JSON has no such numbers)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _jsonable(value):
    """Plain JSON types only: NaN/inf become null, paths and other objects strings."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=str)
    if dataclasses.is_dataclass(value):
        return _jsonable(dataclasses.asdict(value))
    return str(value)


def _round(value, digits=6):
    value = _finite(value)
    return None if value is None else round(value, digits)


def _module_info(module: FeatureModule) -> dict:
    """What identifies the feature module (not its function or weights)."""
    return {"spec": module.spec, "identity": module.identity, "height": module.height, "width": module.width,
            "bottleneck_size": module.bottleneck_size}


def build_summary(data: ReportData, report_dir: Path | None = None) -> dict:
    """The summary.json contents (without writing anything)."""
    labels = list(data.labels)
    n = len(labels)
    true = np.asarray(data.test_true, dtype=np.int64).reshape(-1)
    predicted = np.asarray(data.test_predicted, dtype=np.int64).reshape(-1)
    matrix = confusion_matrix(true, predicted, n)
    metrics = per_class_metrics(true, predicted, n)
    names = list(data.test_names)
    if names and len(names) != len(true):
        raise ValueError(f"{len(names)} test image names for {len(true)} test images.")

    test_accuracy = data.test_accuracy
    if test_accuracy is None and len(true):
        test_accuracy = float((true == predicted).mean())
    history = list(data.history)
    train_steps, train_acc = series(history, "train_accuracy")
    _val_steps, val_acc = series(history, "validation_accuracy")
    train_accuracy = data.train_accuracy if data.train_accuracy is not None else (
        float(train_acc[-1]) if len(train_acc) else None)
    validation_accuracy = data.validation_accuracy if data.validation_accuracy is not None else (
        float(val_acc[-1]) if len(val_acc) else None)

    per_class = {}
    for i, label in enumerate(labels):
        per_class[label] = {
            "precision": _round(metrics["precision"][i]),
            "recall": _round(metrics["recall"][i]),
            "f1": _round(metrics["f1"][i]),
            "support": int(metrics["support"][i]),
            "predicted": int(metrics["predicted"][i]),
        }
    macro = {k: _round(np.nanmean(metrics[k])) if np.isfinite(metrics[k]).any() else None
             for k in ("precision", "recall", "f1")}

    per_class_counts = {}
    for label in labels:
        c = data.counts.get(label, {})
        row = {s: int(c.get(s, 0)) for s in SETS}
        row["total"] = sum(row.values())
        per_class_counts[label] = row
    per_split = {s: sum(row[s] for row in per_class_counts.values()) for s in SETS}

    misclassified = [
        {**(name_fields(names[i]) if names else {"path": None}), "true": labels[true[i]],
         "predicted": labels[predicted[i]]}
        for i in np.flatnonzero(true != predicted)
    ]
    skipped = [{**name_fields(s.path), "reason": s.reason} for s in data.skipped]
    summary = {
        "format": SUMMARY_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(name_fields(report_dir, "report_dir") if report_dir is not None else {"report_dir": None}),
        "files": {"training_curves": CURVES_FILE, "confusion_matrix": CONFUSION_FILE, "summary": SUMMARY_FILE},
        "module": _module_info(data.module),
        "settings": _settings(data.settings),
        "labels": labels,
        "counts": {"per_class": per_class_counts, "per_split": per_split, "total": sum(per_split.values())},
        "skipped": skipped,
        "skipped_count": len(skipped),
        "accuracy": {
            "train": _round(train_accuracy),
            "validation": _round(validation_accuracy),
            "test": _round(test_accuracy),
            "test_count": int(len(true)),
        },
        "training": {
            "evaluations": len(history),
            "last_step": int(train_steps[-1]) if len(train_steps) else None,
        },
        "per_class": per_class,
        "macro_average": macro,
        "confusion_matrix": _matrix_entry(matrix),
        "misclassified": misclassified,
        "timings_s": {str(k): _round(v, 3) for k, v in data.timings.items()},
        "overfitting_warning": overfitting_warning(history),
        "fine_tune": dict(data.fine_tune) if data.fine_tune else None,
        "network_fine_tune": dict(data.network_fine_tune) if data.network_fine_tune else None,
        "calibration": dict(data.calibration) if data.calibration else None,
        "model_selection": dict(data.model_selection) if data.model_selection else None,
        "data_checks": None,
    }
    if data.findings is not None:
        summary["data_checks"] = summary_of(data.findings)
        summary["files"].update(suspected_label_errors=LABEL_ERRORS_CSV, duplicates=DUPLICATES_CSV)
    for key, value in (data.multi_label or {}).items():  # per label, over the per-class figures of a softmax
        summary[key] = {**summary[key], **value} if key == "accuracy" else value
    return _jsonable(summary)


def _settings(settings: dict) -> dict:
    """The flags as given; a path that is not UTF-8 gets its bytes beside it, as every name does (data/names.py)."""
    entries = {}
    for flag, value in settings.items():
        entries.update(name_fields(value, flag) if isinstance(value, str) and not is_utf8(value) else {flag: value})
    return entries


def _matrix_entry(matrix: np.ndarray) -> dict:
    entry = {"rows": "true", "columns": "predicted"}
    if len(matrix) <= DENSE_MATRIX_UP_TO:
        entry["counts"] = matrix.tolist()
    else:
        entry["cells"] = [[int(i), int(j), int(matrix[i, j])] for i, j in zip(*np.nonzero(matrix))]
    return entry


# ---------------------------------------------------------------------------------------------
# The report folder


def write_report(report_dir, data: ReportData) -> dict:
    """Write the plots, the data checks' CSVs, report.html and summary.json under ``report_dir``; returns the
    summary dict."""
    try:
        with all_or_nothing():  # a failure on the way leaves the previous report whole, never half of a new one
            return _write_report(Path(report_dir), data)
    except OSError as exc:  # the outputs are in place by now: say so, in one sentence
        raise UserError(f"The outputs were written, but the report could not be: {exc.strerror or exc} "
                        f"({exc.filename or report_dir}).", exit_code=EXIT_FAILURE) from None


def _write_report(report_dir: Path, data: ReportData) -> dict:
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(data, report_dir)
    write_plots(report_dir, list(data.history), summary)
    if data.findings is not None:
        write_csvs(report_dir, data.findings)
    else:  # an earlier run's findings would pass for this run's
        for name in (LABEL_ERRORS_CSV, DUPLICATES_CSV):
            remove_atomic(report_dir / name)
    if data.page is not None:
        views = build_views(data.views, data.page, summary["labels"], report_dir) if data.views is not None else None
        started = time.perf_counter()
        summary["page"] = write_page(report_dir, summary, data.page, views)
        summary["files"]["page"] = PAGE_FILE
        summary["timings_s"]["report_page"] = _round(time.perf_counter() - started, 3)
        if views is not None:
            summary["views"] = _jsonable(views.summary())
            summary["timings_s"].update({f"report_{k}": _round(v, 3) for k, v in views.timings.items()})
    text = json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False)
    write_text_atomic(report_dir / SUMMARY_FILE, text + "\n")
    return summary
