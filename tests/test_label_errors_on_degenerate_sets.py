"""The label-error check on sets it cannot judge whole: folds with nothing to train on or fewer than two classes are
skipped and the findings say so, images whose class their fold's layer never saw are not judged, and nothing
crashes."""
from __future__ import annotations

import shutil

import numpy as np
from helpers import retrain_args, write_photo

from bottleneck.cli.retrain import retrain_main
from bottleneck.data_checks.all_images import AllImages
from bottleneck.data_checks.findings import run_checks, summary_of
from bottleneck.data_checks.label_errors import out_of_fold

LABELS = ["a", "b", "c"]


def images_of(groups: list[tuple[int, int, str | None]], seed: int = 0) -> AllImages:
    """(class, count, content): ``count`` images of ``class``, all of one content (its digest) unless None."""
    rng = np.random.default_rng(seed)
    xs, ys, digests = [], [], []
    for c, count, content in groups:
        centre = np.eye(8, dtype=np.float32)[c] * 3
        for i in range(count):
            xs.append(centre + (0 if content else rng.normal(0, 0.3, 8).astype(np.float32)))
            ys.append(c)
            digests.append(content or f"{c}-{i}")
    n = len(ys)
    return AllImages(np.stack(xs), np.array(ys, np.int64), [f"/images/{d}-{i}.jpg" for i, d in enumerate(digests)],
                     ["training"] * n, digests)


def test_three_classes_of_one_photo_are_not_judged_and_the_findings_say_why():
    images = images_of([(0, 5, "photo"), (1, 5, "photo"), (2, 5, "photo")])  # one content: one fold
    findings = run_checks(images, LABELS)  # raised "ValueError: high <= 0"
    assert findings.label_errors == [] and findings.out_of_fold is None
    assert "nothing to train on" in findings.note
    summary = summary_of(findings)
    assert summary["note"] == findings.note and summary["label_errors"]["disputed"] == 0


def test_classes_each_of_one_photo_are_not_disputed_by_layers_that_never_saw_them():
    images = images_of([(0, 5, "red"), (1, 5, "green"), (2, 5, "blue")])  # each class in a fold of its own
    findings = run_checks(images, LABELS)
    assert findings.label_errors == []  # each layer saw at most the other two classes: it cannot judge these
    assert findings.note


def test_every_fold_with_something_to_train_on_still_judges_its_images():
    images = images_of([(0, 12, None), (1, 12, None), (2, 5, "one photo")])
    probabilities = out_of_fold(images, 3, folds=5, seed=0)
    judged = ~np.isnan(probabilities).any(axis=1)
    assert judged[images.y != 2].all()  # every fold's layer saw classes a and b
    assert not judged[images.y == 2].any()  # class c's one content sits in one fold: no layer saw class c
    findings = run_checks(images, LABELS)
    assert all(e.label != "c" for e in findings.label_errors)  # never disputed blindly
    assert "5 image(s)" in findings.note
    accuracy = summary_of(findings)["label_errors"]["cross_validated_accuracy"]
    assert accuracy is not None and np.isfinite(accuracy)


def test_a_run_on_three_classes_of_one_photo_completes_and_reports_the_skip(tmp_path, tiny_module, capsys):
    root = tmp_path / "images"
    photo = write_photo(tmp_path / "one.jpg", (200, 100, 50), seed=1)
    for label in ("one", "two", "three"):
        for i in range(5):
            (root / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, root / label / f"copy_{i}.jpg")
    code = retrain_main(retrain_args(tmp_path, root, tiny_module, steps=10))
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    assert "No image was judged for label errors" in err


def test_a_normal_set_is_judged_whole():
    images = images_of([(0, 10, None), (1, 10, None), (2, 10, None)])
    findings = run_checks(images, LABELS)
    assert findings.out_of_fold is not None and not np.isnan(findings.out_of_fold).any()
    assert findings.note == ""
