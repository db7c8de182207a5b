"""The data checks on planted problems, with the tiny module: wrong labels, copies across classes, test leakage."""
import csv
import json
import shutil

import numpy as np
import pytest
from helpers import CLASS_COLOURS, make_dataset, retrain_args, the_error, write_photo

from bottleneck.cli.retrain import retrain_main
from bottleneck.data.split import which_set
from bottleneck.data_checks.duplicates import similar_vectors
from bottleneck.data_checks.label_errors import assign_folds


def name_in(set_name: str, stem: str) -> str:
    """A file name that the split puts in ``set_name`` (with the default 10% / 10%)."""
    return next(f"{stem}_{i}.jpg" for i in range(1000) if which_set(f"{stem}_{i}.jpg", 10, 10) == set_name)


def planted(root):
    """30 photos per colour, plus a red photo in blue, a red photo copied into green, a test photo copied into
    training."""
    images = make_dataset(root, {"red": 30, "green": 30, "blue": 30})
    write_photo(images / "blue" / "mislabelled.jpg", CLASS_COLOURS["red"], seed=4242)
    shutil.copy(images / "red" / "img_001.jpg", images / "green" / "same_as_red_001.jpg")
    test_photo = next(p for p in sorted((images / "blue").glob("img_*.jpg")) if which_set(p.name, 10, 10) == "testing")
    leaked = images / "blue" / name_in("training", "copy")
    shutil.copy(test_photo, leaked)
    return images, test_photo, leaked


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_module):
    tmp = tmp_path_factory.mktemp("checks")
    images, test_photo, leaked = planted(tmp / "images")
    import logging

    records = []

    def keep(record):  # a filter, because the command replaces the logger's handlers
        records.append(record)
        return True

    logging.getLogger("retrain").addFilter(keep)
    try:
        assert retrain_main(retrain_args(tmp, images, tiny_module)) == 0
    finally:
        logging.getLogger("retrain").removeFilter(keep)
    report = tmp / "out" / "graph_report"
    summary = json.loads((report / "summary.json").read_text())
    return tmp, images, test_photo, leaked, report, summary, records


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_the_photo_in_the_wrong_folder_is_the_top_suspected_label_error(run):
    _tmp, images, *_rest, report, summary, _records = run
    top = summary["data_checks"]["label_errors"]["top"][0]
    assert top["path"] == str(images / "blue" / "mislabelled.jpg")
    assert (top["label"], top["suggested"]) == ("blue", "red")
    rows = _rows(report / summary["files"]["suspected_label_errors"])
    assert rows[0]["path"] == top["path"] and len(rows) == summary["data_checks"]["label_errors"]["disputed"]


def test_an_exact_copy_in_two_classes_is_reported(run):
    _tmp, images, *_rest, report, summary, _records = run
    assert summary["data_checks"]["duplicates"]["exact_cross_class"] == 1
    crossing = [r for r in _rows(report / "duplicates.csv") if r["crosses_classes"] == "1"]
    assert [(r["kind"], {r["path_a"], r["path_b"]}) for r in crossing] == [
        ("exact", {str(images / "red" / "img_001.jpg"), str(images / "green" / "same_as_red_001.jpg")})]


def test_a_test_photo_copied_into_training_is_leakage_with_a_warning(run):
    _tmp, _images, test_photo, leaked, report, summary, records = run
    assert summary["data_checks"]["leakage"]["test_images"] == 1
    assert summary["data_checks"]["leakage"]["test_paths"] == [str(test_photo)]
    warnings = [r.getMessage() for r in records if r.levelname == "WARNING"]
    assert any(m.startswith("1 test image(s) have an exact or near copy") for m in warnings), warnings
    assert any(str(test_photo) in m and str(leaked) in m for m in warnings)
    assert "1 test image has an exact or near copy" in (report / "report.html").read_text()


def test_strict_fails_on_leakage_and_keeps_the_previous_outputs(run, tiny_module, capsys):
    tmp, images, *_rest = run
    graph = tmp / "out" / "graph.pb"
    before = graph.read_bytes()
    capsys.readouterr()
    assert retrain_main(retrain_args(tmp, images, tiny_module, "--strict", "--random_seed=5")) == 1
    message = the_error(capsys.readouterr().err)
    assert "1 test image(s) have an exact or near copy" in message and "left untouched" in message
    assert graph.read_bytes() == before


def test_skipping_the_checks_leaves_the_rest_of_the_report(tmp_path, tiny_module):
    images = make_dataset(tmp_path / "images", 12)
    assert retrain_main(retrain_args(tmp_path, images, tiny_module, "--skip_data_checks")) == 0
    report = tmp_path / "out" / "graph_report"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["data_checks"] is None and summary["files"]["page"] == "report.html"
    assert not (report / "duplicates.csv").exists() and (report / "report.html").is_file()


def test_near_copies_stand_out_from_their_neighbourhood_but_class_mates_do_not():
    rng = np.random.default_rng(0)
    centre = rng.random(64)
    crowd = centre + rng.normal(0, 0.3, size=(200, 64))  # one dense class: all alike, none a copy
    copy = crowd[17] + rng.normal(0, 0.01, size=64)
    pairs, index = similar_vectors(np.vstack([crowd, copy]))
    assert [(i, j) for i, j, _s in pairs] == [(17, 200)] and "exact" in index
    approximate, index = similar_vectors(np.vstack([crowd, copy]), exact_limit=100)
    assert [(i, j) for i, j, _s in approximate] == [(17, 200)] and "approximate" in index


def test_copies_share_a_fold_and_every_class_is_spread_over_the_folds():
    y = np.repeat(np.arange(3), 20)
    digests = [f"d{i}" for i in range(60)]
    digests[45] = digests[3]  # the same content in classes 0 and 2
    fold = assign_folds(y, digests, 5, seed=1)
    assert fold[45] == fold[3]
    for c in range(3):
        assert set(np.bincount(fold[y == c], minlength=5)) <= {3, 4, 5}
