"""The run report: training curves, test confusion matrix and a machine-readable summary.

``write_report(report_dir, data)`` writes, each atomically:

* ``training_curves.png`` - accuracy (train, validation) and cross-entropy vs step;
* ``confusion_matrix.png`` - test set, counts in the cells, colour = share of the true class;
* ``summary.json`` - settings, module, counts, skipped images, accuracies, per-class
  precision/recall/F1, misclassified test images, phase timings, calibration and the
  data checks' findings (written last, so its presence means the report is complete);
* with the data checks, ``suspected_label_errors.csv`` and ``duplicates.csv``
  (data_checks.py), and with a page, ``report.html`` (report_html.py).

Plots use matplotlib's object API on an Agg canvas: no pyplot, no global
backend switch, no windows, nothing left registered after the call.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path, write_text_atomic
from ..errors import EXIT_FAILURE, UserError
from ..training.metrics import confusion_matrix, matrix_from_summary, per_class_metrics

SUMMARY_FORMAT = "bottleneck-report/1"
CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
SUMMARY_FILE = "summary.json"
SPLITS = ("training", "validation", "testing")
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

    ``history`` items need ``step``, ``train_accuracy``, ``cross_entropy``,
    ``validation_accuracy`` (None when not measured) and ``validation_count``
    (train.EvalPoint has them), optionally ``validation_cross_entropy``;
    objects or mappings both work.  ``test_true``/``test_predicted`` are class
    indices into ``labels``; ``test_names`` the matching image paths.
    ``skipped`` holds ``(path, reason)`` pairs or objects with ``.path`` and
    ``.reason`` (extract.Skipped).  Accuracies left as None are derived: train
    and validation from the last evaluation in ``history``, test from the
    test indices.
    """

    labels: Sequence[str]
    history: Sequence[Any] = ()
    test_true: Any = ()
    test_predicted: Any = ()
    test_names: Sequence[Any] = ()
    counts: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    skipped: Sequence[Any] = ()
    settings: Any = field(default_factory=dict)  # mapping, or a dataclass such as RetrainConfig
    module: Any = field(default_factory=dict)  # mapping, or a modules.FeatureModule
    timings: Mapping[str, float] = field(default_factory=dict)
    train_accuracy: float | None = None
    validation_accuracy: float | None = None
    test_accuracy: float | None = None
    fine_tune: Mapping[str, Any] | None = None  # what fine-tuning did, when it ran
    calibration: Mapping[str, Any] | None = None  # temperature, calibration error, accuracy against coverage
    findings: Any = None  # data_checks.Findings, when the data checks ran
    page: Any = None  # report_html.PageData: with it, report.html is written too


# ---------------------------------------------------------------------------------------------
# History


def _get(item, name: str, default=None):
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


def _finite(value) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _series(history: Iterable[Any], name: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    for item in history:
        value = _finite(_get(item, name))
        if value is not None:
            steps.append(int(_get(item, "step", len(steps))))
            values.append(value)
    return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)


def overfitting_warning(history: Sequence[Any]) -> str | None:
    """A sentence when training accuracy keeps up while validation accuracy falls late in training.

    Rule, robust to the noise of batch-sized evaluations: take the evaluations
    that have a validation accuracy, in step order; in their second half compare
    the mean over its first third (window A) with the mean over its last third
    (window B).  Warn when validation fell by at least 3 points and by more
    than twice the binomial standard error of that difference (from the
    validation counts), while training accuracy did not fall (B >= A) or
    stayed at 99% or more.  Each window needs at least 4 evaluations.
    """
    points = [
        (int(_get(p, "step", i)), _finite(_get(p, "train_accuracy")), _finite(_get(p, "validation_accuracy")),
         int(_get(p, "validation_count", 0) or 0))
        for i, p in enumerate(history)
    ]
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
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return _jsonable(dataclasses.asdict(value))
    return str(value)


def _round(value, digits=6):
    value = _finite(value)
    return None if value is None else round(value, digits)


def _skipped_entry(item) -> dict:
    if isinstance(item, (tuple, list)) and len(item) == 2:
        path, reason = item
    else:
        path, reason = _get(item, "path"), _get(item, "reason")
    return {"path": str(path), "reason": str(reason)}


def _module_info(module) -> dict:
    """A mapping as given; a modules.FeatureModule reduced to what identifies it."""
    if isinstance(module, Mapping):
        return dict(module)
    keys = ("spec", "identity", "height", "width", "bottleneck_size")
    return {k: getattr(module, k) for k in keys if hasattr(module, k)}


def _settings(settings) -> dict:
    """A mapping as given; a dataclass (e.g. RetrainConfig) as its fields."""
    if isinstance(settings, Mapping):
        return dict(settings)
    if hasattr(settings, "__dataclass_fields__"):
        return {name: getattr(settings, name) for name in settings.__dataclass_fields__}
    return vars(settings) if hasattr(settings, "__dict__") else {}


def build_summary(data: ReportData, report_dir=None) -> dict:
    """The summary.json contents (without writing anything)."""
    labels = [str(label) for label in data.labels]
    n = len(labels)
    true = np.asarray(data.test_true, dtype=np.int64).reshape(-1)
    predicted = np.asarray(data.test_predicted, dtype=np.int64).reshape(-1)
    matrix = confusion_matrix(true, predicted, n)
    metrics = per_class_metrics(true, predicted, n)
    names = [str(name) for name in data.test_names]
    if names and len(names) != len(true):
        raise ValueError(f"{len(names)} test image names for {len(true)} test images.")

    test_accuracy = data.test_accuracy
    if test_accuracy is None and len(true):
        test_accuracy = float((true == predicted).mean())
    history = list(data.history)
    train_steps, train_acc = _series(history, "train_accuracy")
    _val_steps, val_acc = _series(history, "validation_accuracy")
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
        row = {s: int(c.get(s, 0)) for s in SPLITS}
        row["total"] = sum(row.values())
        per_class_counts[label] = row
    per_split = {s: sum(row[s] for row in per_class_counts.values()) for s in SPLITS}

    misclassified = [
        {"path": names[i] if names else None, "true": labels[true[i]], "predicted": labels[predicted[i]]}
        for i in np.flatnonzero(true != predicted)
    ]
    skipped = [_skipped_entry(s) for s in data.skipped]
    summary = {
        "format": SUMMARY_FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "report_dir": str(report_dir) if report_dir is not None else None,
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
        "calibration": dict(data.calibration) if data.calibration else None,
        "data_checks": None,
    }
    if data.findings is not None:
        from ..data_checks.checks import DUPLICATES_CSV, LABEL_ERRORS_CSV, summary_of

        summary["data_checks"] = summary_of(data.findings)
        summary["files"].update(suspected_label_errors=LABEL_ERRORS_CSV, duplicates=DUPLICATES_CSV)
    return _jsonable(summary)


def _matrix_entry(matrix: np.ndarray) -> dict:
    entry = {"rows": "true", "columns": "predicted"}
    if len(matrix) <= DENSE_MATRIX_UP_TO:
        entry["counts"] = matrix.tolist()
    else:
        entry["cells"] = [[int(i), int(j), int(matrix[i, j])] for i, j in zip(*np.nonzero(matrix))]
    return entry


# ---------------------------------------------------------------------------------------------
# Plots


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure, target: Path) -> None:
    with atomic_path(target) as tmp:
        figure.savefig(tmp, format="png")
    figure.clear()


def _plain_text(text: str, limit: int = 28) -> str:
    """A label as literal text: ``$`` would start matplotlib math mode; long names are shortened."""
    text = text if len(text) <= limit else text[: limit - 1] + "\u2026"
    return text.replace("$", r"\$")


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window // 2, values[0]), values, np.full(window - 1 - window // 2, values[-1])])
    return np.convolve(padded, kernel, mode="valid")


def plot_training_curves(history: Sequence[Any], target) -> None:
    figure = _figure(11, 4.5)
    acc_ax, loss_ax = figure.subplots(1, 2)
    series = {
        name: _series(history, name)
        for name in ("train_accuracy", "validation_accuracy", "cross_entropy", "validation_cross_entropy")
    }
    longest = max(len(v) for _s, v in series.values())
    window = max(1, longest // 40)  # smooth noisy batch evaluations when there are many
    styles = {
        "train_accuracy": ("train", "tab:blue", acc_ax, 100.0),
        "validation_accuracy": ("validation", "tab:orange", acc_ax, 100.0),
        "cross_entropy": ("train", "tab:blue", loss_ax, 1.0),
        "validation_cross_entropy": ("validation", "tab:orange", loss_ax, 1.0),
    }
    for name, (label, colour, ax, scale) in styles.items():
        steps, values = series[name]
        if not len(values):
            continue
        if window > 1:
            ax.plot(steps, values * scale, color=colour, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _smooth(values, window) * scale, color=colour, linewidth=1.6,
                    label=f"{label} (mean of {window})")
        else:
            ax.plot(steps, values * scale, color=colour, linewidth=1.4, marker="." if len(values) < 30 else None,
                    label=label)
    acc_ax.set_title("Accuracy")
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_ylim(-2, 102)
    loss_ax.set_title("Cross-entropy")
    loss_ax.set_ylabel("cross-entropy")
    for ax in (acc_ax, loss_ax):
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best")
        else:
            ax.text(0.5, 0.5, "no evaluations recorded", ha="center", va="center", transform=ax.transAxes)
    _, loss_values = series["cross_entropy"]
    if len(loss_values):
        loss_ax.set_ylim(bottom=0)
    _save_png(figure, Path(target))


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], target, title: str = "") -> None:
    """Counts in the cells; colour is the share of the row (true class), so rare classes show too."""
    n = len(labels)
    size = min(30.0, max(6.0, 0.32 * n + 3.5))
    figure = _figure(size, size * 0.92)
    ax = figure.subplots()
    if n == 0 or matrix.sum() == 0:
        ax.axis("off")
        ax.text(0.5, 0.5, "No test images: no confusion matrix.", ha="center", va="center", fontsize=14)
        _save_png(figure, Path(target))
        return
    support = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, support, out=np.zeros(matrix.shape, dtype=np.float64), where=support > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
    colorbar = figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label("share of the true class")
    tick_font = 10 if n <= 12 else 9 if n <= 25 else 8 if n <= 60 else 6
    cell_font = 11 if n <= 8 else 9 if n <= 15 else 8 if n <= 30 else 7 if n <= 60 else 0  # none past 60
    names = [_plain_text(str(label)) for label in labels]
    if n <= 10 and max(len(name) for name in names) * n <= 60:
        ax.set_xticks(range(n), names, fontsize=tick_font)
    else:
        ax.set_xticks(range(n), names, rotation=90, fontsize=tick_font)
    ax.set_yticks(range(n), names, fontsize=tick_font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "Confusion matrix (test set)")
    if cell_font:
        for i in range(n):
            for j in range(n):
                count = int(matrix[i, j])
                if count == 0 and n > 12:
                    continue  # zeros would drown the cells that matter
                ax.text(j, i, str(count), ha="center", va="center", fontsize=cell_font,
                        color="white" if share[i, j] > 0.55 else "black")
    _save_png(figure, Path(target))


# ---------------------------------------------------------------------------------------------
# Report


def write_report(report_dir, data: ReportData) -> dict:
    """Write the two plots and summary.json under ``report_dir``; returns the summary dict."""
    try:
        return _write_report(Path(report_dir), data)
    except OSError as exc:  # the outputs are in place by now: say so, in one sentence
        raise UserError(f"The outputs were written, but the report could not be: {exc.strerror or exc} "
                        f"({exc.filename or report_dir}).", exit_code=EXIT_FAILURE) from None


def _write_report(report_dir: Path, data: ReportData) -> dict:
    report_dir.mkdir(parents=True, exist_ok=True)
    summary = build_summary(data, report_dir)
    matrix = matrix_from_summary(summary)
    test = summary["accuracy"]
    title = "Confusion matrix (test set)"
    if test["test"] is not None:
        title = f"Confusion matrix (test set, N={test['test_count']}, accuracy {test['test'] * 100:.1f}%)"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing")  # e.g. CJK class names in DejaVu Sans
        plot_training_curves(list(data.history), report_dir / CURVES_FILE)
        plot_confusion_matrix(matrix, summary["labels"], report_dir / CONFUSION_FILE, title)
    if data.findings is not None:
        from ..data_checks.checks import write_csvs

        write_csvs(report_dir, data.findings)
    if data.page is not None:
        import time

        from .page import PAGE_FILE, write_page

        started = time.perf_counter()
        summary["page"] = write_page(report_dir, summary, data.page)
        summary["files"]["page"] = PAGE_FILE
        summary["timings_s"]["report_page"] = _round(time.perf_counter() - started, 3)
    text = json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False)
    write_text_atomic(report_dir / SUMMARY_FILE, text + "\n")
    return summary


def human_summary(summary: Mapping[str, Any], worst: int = 3) -> list[str]:
    """A few lines for the end of a run, from ``write_report``'s summary."""
    lines = []
    accuracy = summary.get("accuracy", {})
    if accuracy.get("test") is not None:
        lines.append(f"Test accuracy: {accuracy['test'] * 100:.1f}% (N={accuracy.get('test_count', 0)})")
    else:
        lines.append("Test accuracy: not measured (no test images).")
    per_class = summary.get("per_class", {})
    scored = [(stats["f1"], label, stats) for label, stats in per_class.items() if stats.get("f1") is not None]
    weak = sorted((s for s in scored if s[0] < 1.0), key=lambda s: (s[0], s[1]))[: max(0, worst)]
    if weak and len(per_class) > 1:
        lines.append("Weakest classes on the test set:")
        for f1, label, stats in weak:
            recall = stats.get("recall")
            recall_text = "n/a" if recall is None else f"{recall * 100:.0f}%"
            lines.append(f"  {label}: F1 {f1:.2f}, recall {recall_text} ({stats.get('support', 0)} test images)")
    tuned = summary.get("fine_tune")
    if tuned:
        before, after = tuned["validation_accuracy_before"], tuned["validation_accuracy_after"]
        if before is None:
            lines.append("Fine-tuning ran without validation images, so its effect was not measured.")
        else:
            verdict = "kept" if tuned["helped"] else "not kept: it did not lower the validation cross-entropy"
            lines.append(f"Fine-tuning {tuned['blocks']} block(s): validation accuracy {before * 100:.1f}% -> "
                         f"{after * 100:.1f}% ({verdict}).")
    skipped = summary.get("skipped_count", len(summary.get("skipped", [])))
    if skipped:
        lines.append(f"Skipped {skipped} unreadable image{'s' if skipped != 1 else ''} (listed in {SUMMARY_FILE}).")
    if summary.get("overfitting_warning"):
        lines.append(summary["overfitting_warning"])
    checks = summary.get("data_checks")
    if checks:
        leak = checks["leakage"]["test_images"]
        if leak:
            lines.append(f"Leakage: {leak} test image{'s have' if leak != 1 else ' has'} a copy in the training or "
                         "validation set, so the test accuracy overstates the model.")
        disputed = checks["label_errors"]["disputed"]
        if disputed:
            lines.append(f"Suspected label errors: {disputed} image{'s' if disputed != 1 else ''} "
                         f"(ranked in {checks['label_errors']['csv']}).")
    if summary.get("report_dir"):
        page = "report.html, " if summary.get("page") else ""
        lines.append(f"Report: {summary['report_dir']} ({page}{SUMMARY_FILE}, {CURVES_FILE}, {CONFUSION_FILE})")
    return lines
