"""The report's two pictures: training curves and the test set's confusion matrix, as PNG files.

Plots use matplotlib's object API on an Agg canvas: no pyplot, no global
backend switch, no windows, nothing left registered after the call.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..training.layer import EvalPoint
from ..training.metrics import matrix_from_summary

CURVES_FILE = "training_curves.png"
CONFUSION_FILE = "confusion_matrix.png"
CURVES = ("train_accuracy", "validation_accuracy", "cross_entropy", "validation_cross_entropy")


def series(history: list[EvalPoint], name: str) -> tuple[np.ndarray, np.ndarray]:
    """The steps and values of one curve (an EvalPoint field named in CURVES), where it was measured and finite."""
    steps, values = [], []
    for point in history:
        value = getattr(point, name)
        if value is not None and math.isfinite(value):
            steps.append(int(point.step))
            values.append(float(value))
    return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)


def write_plots(report_dir: Path, history: list[EvalPoint], summary: dict) -> None:
    """training_curves.png from the history, confusion_matrix.png from the summary's test results."""
    matrix = matrix_from_summary(summary)
    test = summary["accuracy"]
    title = "Confusion matrix (test set)"
    if test["test"] is not None:
        title = f"Confusion matrix (test set, N={test['test_count']}, accuracy {test['test'] * 100:.1f}%)"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph .* missing")  # e.g. CJK class names in DejaVu Sans
        plot_training_curves(history, report_dir / CURVES_FILE)
        plot_confusion_matrix(matrix, summary["labels"], report_dir / CONFUSION_FILE, title)


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


def plot_training_curves(history: list[EvalPoint], target: Path) -> None:
    figure = _figure(11, 4.5)
    acc_ax, loss_ax = figure.subplots(1, 2)
    curves = {name: series(history, name) for name in CURVES}
    longest = max(len(v) for _s, v in curves.values())
    window = max(1, longest // 40)  # smooth noisy batch evaluations when there are many
    styles = {
        "train_accuracy": ("train", "tab:blue", acc_ax, 100.0),
        "validation_accuracy": ("validation", "tab:orange", acc_ax, 100.0),
        "cross_entropy": ("train", "tab:blue", loss_ax, 1.0),
        "validation_cross_entropy": ("validation", "tab:orange", loss_ax, 1.0),
    }
    for name, (label, colour, ax, scale) in styles.items():
        steps, values = curves[name]
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
    _, loss_values = curves["cross_entropy"]
    if len(loss_values):
        loss_ax.set_ylim(bottom=0)
    _save_png(figure, target)


def plot_confusion_matrix(matrix: np.ndarray, labels: list[str], target: Path, title: str = "") -> None:
    """Counts in the cells; colour is the share of the row (true class), so rare classes show too."""
    n = len(labels)
    size = min(30.0, max(6.0, 0.32 * n + 3.5))
    figure = _figure(size, size * 0.92)
    ax = figure.subplots()
    if n == 0 or matrix.sum() == 0:
        ax.axis("off")
        ax.text(0.5, 0.5, "No test images: no confusion matrix.", ha="center", va="center", fontsize=14)
        _save_png(figure, target)
        return
    support = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, support, out=np.zeros(matrix.shape, dtype=np.float64), where=support > 0)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest", aspect="equal")
    colorbar = figure.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    colorbar.set_label("share of the true class")
    tick_font = 10 if n <= 12 else 9 if n <= 25 else 8 if n <= 60 else 6
    cell_font = 11 if n <= 8 else 9 if n <= 15 else 8 if n <= 30 else 7 if n <= 60 else 0  # none past 60
    names = [_plain_text(label) for label in labels]
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
    _save_png(figure, target)
