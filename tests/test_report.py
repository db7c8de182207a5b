"""Run report: plots, summary.json, metrics, over-fitting rule, end-of-run lines (no TensorFlow)."""
from __future__ import annotations

import json
import math
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bottleneck.config.settings import RetrainConfig
from bottleneck.extraction.batches import Skipped
from bottleneck.model.modules import FeatureModule
from bottleneck.report.console import human_summary
from bottleneck.report.page import PAGE_FILE, PageData, Predictions
from bottleneck.report.plots import CONFUSION_FILE, CURVES_FILE
from bottleneck.report.summary import SUMMARY_FILE, ReportData, build_summary, overfitting_warning, write_report
from bottleneck.training.layer import EvalPoint
from bottleneck.training.metrics import confusion_matrix, per_class_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODULE = FeatureModule(spec="inception_v3", identity="inception_v3@sha256:abc|[0,1]", height=299, width=299,
                       bottleneck_size=2048, features=lambda images: images, classic_cache_suffixes=())


# Three classes, 10 test images, a known confusion:
#            predicted  a  b  c
#   true a              3  1  0
#   true b              0  2  1
#   true c              1  0  2
TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PRED = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
LABELS = ["a", "b", "c"]


def healthy_history(steps=4000, every=10, seed=0, with_validation_loss=False):
    """Rising, saturating curves with the noise of 100-image batch evaluations."""
    rng = np.random.default_rng(seed)
    history = []
    for step in list(range(0, steps, every)) + [steps - 1]:
        t = step / steps
        p_train = 0.95 - 0.6 * math.exp(-8 * t)
        p_val = 0.90 - 0.55 * math.exp(-8 * t)
        point = EvalPoint(step, rng.binomial(100, p_train) / 100,
                          1.2 * math.exp(-5 * t) + 0.15 + rng.normal(0, 0.03), rng.binomial(100, p_val) / 100, 100)
        if with_validation_loss:
            point.validation_cross_entropy = 1.3 * math.exp(-5 * t) + 0.25 + rng.normal(0, 0.03)
        history.append(point)
    return history


def overfitting_history(steps=4000, every=10, seed=0):
    """Training accuracy climbs to ~100% while validation peaks mid-run then falls ~10 points."""
    rng = np.random.default_rng(seed)
    history = []
    for step in list(range(0, steps, every)) + [steps - 1]:
        t = step / steps
        p_train = min(0.999, 0.5 + 0.5 * t ** 0.5)
        p_val = 0.88 - 0.5 * math.exp(-10 * t) - 0.2 * max(0.0, t - 0.5) ** 1.0
        history.append(EvalPoint(step, rng.binomial(100, p_train) / 100, 1.0 - 0.9 * t,
                                 rng.binomial(100, p_val) / 100, 100))
    return history


def report_data(**overrides):
    values = dict(
        labels=LABELS,
        history=healthy_history(steps=200),
        test_true=np.array(TRUE),
        test_predicted=np.array(PRED),
        test_names=[f"/data/{LABELS[t]}/img_{i}.jpg" for i, t in enumerate(TRUE)],
        counts={"a": {"training": 40, "validation": 5, "testing": 4},
                "b": {"training": 30, "validation": 4, "testing": 3},
                "c": {"training": 20, "validation": 3, "testing": 3}},
        skipped=[Skipped(Path("/data/a/broken.jpg"), "not an image"), Skipped(Path("/data/c/empty.png"), "empty file")],
        settings={"learning_rate": 0.01, "image_dir": Path("/data"), "steps": 200, "odd": float("nan")},
        module=MODULE,
        timings={"walk": 0.01234, "bottlenecks": 12.5, "training": 3.25, "export": 0.5},
    )
    values.update(overrides)
    return ReportData(**values)


def assert_png(path: Path, min_side=300, max_side=4000):
    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
        assert image.format == "PNG"
        assert min_side <= width <= max_side and min_side <= height <= max_side
        return image.size


# -- metrics ----------------------------------------------------------------------------------


def test_confusion_matrix_hand_made():
    np.testing.assert_array_equal(confusion_matrix(TRUE, PRED, 3), [[3, 1, 0], [0, 2, 1], [1, 0, 2]])


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError):
        confusion_matrix([0, 2], [0, 1], 2)


def test_per_class_metrics_hand_made():
    m = per_class_metrics(TRUE, PRED, 3)
    np.testing.assert_allclose(m["recall"], [3 / 4, 2 / 3, 2 / 3])
    np.testing.assert_allclose(m["precision"], [3 / 4, 2 / 3, 2 / 3])
    np.testing.assert_allclose(m["f1"], [3 / 4, 2 / 3, 2 / 3])
    np.testing.assert_array_equal(m["support"], [4, 3, 3])
    np.testing.assert_array_equal(m["predicted"], [4, 3, 3])


def test_per_class_metrics_asymmetric():
    # a: 2 of 2 found, but b is also called a once -> precision 2/3, recall 1; c is never predicted.
    m = per_class_metrics([0, 0, 1, 1, 2], [0, 0, 0, 1, 1], 4)
    np.testing.assert_allclose(m["precision"][:2], [2 / 3, 1 / 2])
    np.testing.assert_allclose(m["recall"][:3], [1.0, 1 / 2, 0.0])
    np.testing.assert_allclose(m["f1"][:3], [0.8, 0.5, 0.0])
    assert math.isnan(m["precision"][2])  # never predicted: undefined precision, but F1 0 (all missed)
    assert math.isnan(m["recall"][3]) and math.isnan(m["f1"][3])  # class 3 absent from the test set


# -- summary.json -----------------------------------------------------------------------------


def test_write_report_files_and_numbers(tmp_path):
    report_dir = tmp_path / "report" / "nested"
    summary = write_report(report_dir, report_data(test_accuracy=0.7))

    curves = assert_png(report_dir / CURVES_FILE)
    assert curves[0] > curves[1]  # two panels side by side
    assert_png(report_dir / CONFUSION_FILE)
    text = (report_dir / SUMMARY_FILE).read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    on_disk = json.loads(text)
    assert on_disk == summary
    assert not [p for p in report_dir.iterdir() if p.name.endswith(".part")]

    assert on_disk["accuracy"]["test"] == 0.7
    assert on_disk["accuracy"]["test_count"] == 10
    assert on_disk["accuracy"]["train"] == summary["accuracy"]["train"] is not None
    assert on_disk["per_class"]["a"]["recall"] == pytest.approx(3 / 4)
    assert on_disk["per_class"]["b"]["recall"] == pytest.approx(2 / 3)
    assert on_disk["per_class"]["c"]["precision"] == pytest.approx(2 / 3)
    assert on_disk["per_class"]["a"]["support"] == 4
    assert on_disk["confusion_matrix"]["counts"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    assert on_disk["counts"]["per_split"] == {"training": 90, "validation": 12, "testing": 10}
    assert on_disk["counts"]["per_class"]["b"] == {"training": 30, "validation": 4, "testing": 3, "total": 37}
    assert on_disk["counts"]["total"] == 112
    assert on_disk["skipped"] == [{"path": "/data/a/broken.jpg", "reason": "not an image"},
                                  {"path": "/data/c/empty.png", "reason": "empty file"}]
    assert on_disk["skipped_count"] == 2
    assert {(m["path"], m["true"], m["predicted"]) for m in on_disk["misclassified"]} == {
        ("/data/a/img_3.jpg", "a", "b"), ("/data/b/img_6.jpg", "b", "c"), ("/data/c/img_9.jpg", "c", "a")}
    assert on_disk["module"]["identity"] == "inception_v3@sha256:abc|[0,1]"
    assert on_disk["settings"]["image_dir"] == "/data"
    assert on_disk["settings"]["odd"] is None  # NaN -> null
    assert on_disk["timings_s"] == {"walk": 0.012, "bottlenecks": 12.5, "training": 3.25, "export": 0.5}
    assert on_disk["overfitting_warning"] is None
    assert on_disk["report_dir"] == str(report_dir)


def test_accuracies_are_derived_when_not_given(tmp_path):
    history = [EvalPoint(0, 0.5, 1.0, 0.4, 10), EvalPoint(10, 0.8, 0.5, None, 0), EvalPoint(19, 0.9, 0.3, 0.75, 10)]
    summary = build_summary(report_data(history=history))
    assert summary["accuracy"] == {"train": 0.9, "validation": 0.75, "test": 0.7, "test_count": 10}
    assert summary["training"] == {"evaluations": 3, "last_step": 19}


def test_undefined_metrics_are_null_in_json(tmp_path):
    # Class c has no test images and is never predicted.
    data = report_data(test_true=np.array([0, 1, 1]), test_predicted=np.array([0, 1, 0]), test_names=["x", "y", "z"])
    summary = write_report(tmp_path, data)
    c = json.loads((tmp_path / SUMMARY_FILE).read_text())["per_class"]["c"]
    assert c == {"precision": None, "recall": None, "f1": None, "support": 0, "predicted": 0}
    assert summary["per_class"]["b"]["recall"] == 0.5


def test_no_test_images_and_no_history(tmp_path):
    none = np.zeros(0, dtype=np.int64)
    data = report_data(history=[], test_true=none, test_predicted=none, test_names=[], skipped=[])
    summary = write_report(tmp_path, data)
    assert summary["accuracy"] == {"train": None, "validation": None, "test": None, "test_count": 0}
    assert_png(tmp_path / CURVES_FILE)
    assert_png(tmp_path / CONFUSION_FILE)
    assert json.loads((tmp_path / SUMMARY_FILE).read_text())["misclassified"] == []
    assert "not measured" in human_summary(summary)[0]


def test_the_runs_objects_become_plain_json():
    history = [EvalPoint(0, 0.5, 1.0, 0.5, 10, validation_cross_entropy=1.1)]
    settings = RetrainConfig().flags()
    summary = build_summary(report_data(skipped=[Skipped(Path("/x.jpg"), "bad")], settings=settings, history=history))
    assert summary["skipped"] == [{"path": "/x.jpg", "reason": "bad"}]
    assert set(summary["settings"]) == set(settings) and "image_dir" in summary["settings"]
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    # What identifies the module, not its function or weights.
    assert summary["module"] == {"spec": "inception_v3", "identity": "inception_v3@sha256:abc|[0,1]", "height": 299,
                                 "width": 299, "bottleneck_size": 2048}


def test_the_page_inlines_its_style_and_script(tmp_path):
    probabilities = np.eye(3, dtype=np.float32)[np.array(PRED)]
    names = [f"/nowhere/img_{i}.jpg" for i in range(len(TRUE))]
    page = PageData(Predictions(names, np.array(TRUE), probabilities), Predictions([], np.zeros(0, np.int64),
                                                                                    np.zeros((0, 3), np.float32)))
    summary = write_report(tmp_path, report_data(test_names=names, page=page))
    text = (tmp_path / PAGE_FILE).read_text(encoding="utf-8")
    css, js = ((files("bottleneck.report") / name).read_text(encoding="utf-8") for name in ("page.css", "page.js"))
    assert f"<style>\n{css}</style>" in text and f"<script>\n{js}</script>" in text
    assert "<link" not in text and "<script src" not in text  # one self-contained file
    assert summary["files"]["page"] == PAGE_FILE and summary["page"]["shown"]["test_misclassified"] == 3


def test_curves_with_validation_cross_entropy_and_long_history(tmp_path):
    summary = write_report(tmp_path, report_data(history=healthy_history(steps=20000, with_validation_loss=True)))
    assert_png(tmp_path / CURVES_FILE)
    assert summary["training"]["last_step"] == 19999


def test_report_overwrites_previous_report(tmp_path):
    write_report(tmp_path, report_data(test_accuracy=0.1))
    write_report(tmp_path, report_data(test_accuracy=0.7))
    assert json.loads((tmp_path / SUMMARY_FILE).read_text())["accuracy"]["test"] == 0.7
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CURVES_FILE, CONFUSION_FILE, SUMMARY_FILE])


@pytest.mark.parametrize("num_classes", [2, 50])
def test_confusion_matrix_renders_for_few_and_many_classes(tmp_path, num_classes):
    rng = np.random.default_rng(num_classes)
    labels = [f"class_{i:02d}_with_a_rather_long_name$" if i % 7 == 0 else f"class_{i:02d}" for i in range(num_classes)]
    true = np.repeat(np.arange(num_classes), 8)
    predicted = np.where(rng.random(len(true)) < 0.8, true, rng.integers(0, num_classes, len(true)))
    data = report_data(labels=labels, test_true=true, test_predicted=predicted,
                       test_names=[f"img_{i}.jpg" for i in range(len(true))], counts={})
    summary = write_report(tmp_path, data)
    width, height = assert_png(tmp_path / CONFUSION_FILE, min_side=400)
    if num_classes == 50:
        assert width >= 1500 and height >= 1500  # room for 50 names and counts
    assert np.asarray(summary["confusion_matrix"]["counts"]).sum() == len(true)
    assert summary["accuracy"]["test"] == pytest.approx(float((true == predicted).mean()))


def test_unicode_labels(tmp_path):
    summary = write_report(tmp_path, report_data(labels=["café", "日本", "naïve"]))
    assert json.loads((tmp_path / SUMMARY_FILE).read_text(encoding="utf-8"))["labels"] == ["café", "日本", "naïve"]
    assert summary["per_class"]["日本"]["support"] == 3
    assert_png(tmp_path / CONFUSION_FILE)


def test_no_pyplot_figures_left_open(tmp_path):
    import sys

    write_report(tmp_path, report_data())
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


# -- over-fitting -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_overfitting_warning_fires_on_overfitting_curve(seed):
    message = overfitting_warning(overfitting_history(seed=seed))
    assert message is not None
    assert "over-fitting" in message and "validation accuracy fell" in message


@pytest.mark.parametrize("seed", range(20))
def test_no_overfitting_warning_on_healthy_noisy_curve(seed):
    assert overfitting_warning(healthy_history(seed=seed)) is None


def test_no_overfitting_warning_on_short_or_validationless_history():
    assert overfitting_warning([]) is None
    assert overfitting_warning(overfitting_history(steps=100, every=10)) is None  # too few evaluations to tell
    no_validation = [EvalPoint(p.step, p.train_accuracy, p.cross_entropy, None, 0) for p in overfitting_history()]
    assert overfitting_warning(no_validation) is None


def test_no_overfitting_warning_when_training_accuracy_falls_too():
    # Both curves fall (e.g. a too high learning rate): not over-fitting.
    history = [EvalPoint(s, 0.95 - 0.2 * s / 1000, 0.3, 0.9 - 0.2 * s / 1000, 100) for s in range(0, 1000, 10)]
    assert overfitting_warning(history) is None


def test_overfitting_warning_when_training_saturated():
    # Training stays at ~100% (tiny dip) while validation falls steadily.
    history = [EvalPoint(s, 1.0 if s % 20 else 0.99, 0.01, 0.95 - 0.15 * s / 1000, 100) for s in range(0, 1000, 10)]
    assert overfitting_warning(history) is not None


def test_overfitting_warning_lands_in_summary_and_human_lines(tmp_path):
    summary = build_summary(report_data(history=overfitting_history()), tmp_path)
    assert summary["overfitting_warning"]
    assert summary["overfitting_warning"] in human_summary(summary)


# -- end-of-run lines -------------------------------------------------------------------------


def test_human_summary_lines(tmp_path):
    # a: recall 1, b: recall 1/3, c: recall 2/3
    true = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    pred = [0, 0, 0, 1, 0, 2, 2, 2, 0]
    data = report_data(test_true=np.array(true), test_predicted=np.array(pred), test_names=[str(i) for i in range(9)])
    summary = build_summary(data, tmp_path)
    lines = human_summary(summary, worst=2)
    text = "\n".join(lines)
    assert lines[0] == "Test accuracy: 66.7% (N=9)"
    weakest = [line for line in lines if line.startswith("  ")]
    assert len(weakest) == 2
    assert weakest[0].startswith("  b: F1 0.50, recall 33%")  # precision 1, recall 1/3
    assert weakest[1].startswith("  c: F1 0.67, recall 67%")  # 2 of 3 found, 2 of 3 calls right
    assert "Skipped 2 unreadable images" in text
    assert str(tmp_path) in lines[-1]
    assert all("\r" not in line and "\x1b" not in line for line in lines)


def test_human_summary_perfect_run_lists_no_weak_classes(tmp_path):
    summary = build_summary(report_data(test_predicted=np.array(TRUE), skipped=[], test_accuracy=None), tmp_path)
    lines = human_summary(summary)
    assert lines[0] == "Test accuracy: 100.0% (N=10)"
    assert not any(line.startswith("  ") for line in lines)
    assert not any("Skipped" in line for line in lines)
