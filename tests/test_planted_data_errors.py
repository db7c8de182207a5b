"""Planted errors in real photos, found with the built-in Inception-v3: wrong folders, a leaked test photo, a copy."""
import csv
import io
import json
import shutil

import pytest
from helpers import ROOT
from PIL import Image

from bottleneck.cli.retrain import retrain_main
from bottleneck.data.split import which_set

pytestmark = pytest.mark.inception
SAMPLE = ROOT / "examples" / "flower_photos"


def _name_in(set_name: str, stem: str) -> str:
    return next(f"{stem}_{i}.jpg" for i in range(1000) if which_set(f"{stem}_{i}.jpg", 10, 10) == set_name)


@pytest.fixture(scope="module")
def planted(tmp_path_factory, inception_model_dir):
    tmp = tmp_path_factory.mktemp("planted")
    images = tmp / "images"
    shutil.copytree(SAMPLE, images)
    classes = sorted(p.name for p in images.iterdir() if p.is_dir())
    moves = [(photo, images / classes[(c + 1) % len(classes)] / photo.name)  # two of each class into the next
             for c, name in enumerate(classes) for photo in sorted((images / name).glob("*.jpg"))[:2]]
    for photo, target in moves:
        photo.rename(target)
    moved = [str(target) for _photo, target in moves]
    # A test photo, resized to 90% and saved again as a JPEG, under a name the split puts in training.
    test_photo = next(p for p in sorted((images / "tulips").glob("*.jpg"))
                      if which_set(p.name, 10, 10) == "testing" and str(p) not in moved)
    with Image.open(test_photo) as im:
        smaller = im.convert("RGB").resize((int(im.width * 0.9), int(im.height * 0.9)), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        smaller.save(buffer, format="JPEG", quality=80)
    leaked = images / "tulips" / _name_in("training", "resized_copy")
    leaked.write_bytes(buffer.getvalue())
    # The same file in two classes.
    original = next(p for p in sorted((images / "roses").glob("*.jpg")) if str(p) not in moved)
    copy = images / "daisy" / f"copy_of_{original.name}"
    shutil.copy(original, copy)
    out = tmp / "out"
    code = retrain_main([
        f"--image_dir={images}", f"--model_dir={inception_model_dir}", f"--bottleneck_dir={out / 'bottlenecks'}",
        f"--output_graph={out / 'graph.pb'}", f"--output_labels={out / 'labels.txt'}",
        f"--summaries_dir={out / 'logs'}", f"--checkpoint_path={out / 'ckpt'}", "--random_seed=0",
        "--how_many_training_steps=500", "--quiet",
    ])
    assert code == 0
    report = out / "graph_report"
    return moved, test_photo, leaked, original, copy, report, json.loads((report / "summary.json").read_text())


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_most_photos_in_the_wrong_folder_are_among_the_top_20_suspects(planted):
    moved, *_rest, report, summary = planted
    top = [row["path"] for row in _rows(report / summary["files"]["suspected_label_errors"])[:20]]
    found = set(top) & set(moved)
    assert len(found) >= 8, (sorted(set(moved) - found), top)


def test_a_resized_reencoded_copy_of_a_test_photo_in_training_is_leakage(planted):
    _moved, test_photo, leaked, _original, _copy, report, summary = planted
    assert str(test_photo) in summary["data_checks"]["leakage"]["test_paths"]
    pairs = [r for r in _rows(report / "duplicates.csv")
             if {r["path_a"], r["path_b"]} == {str(test_photo), str(leaked)}]
    assert [(r["kind"], r["crosses_sets"]) for r in pairs] == [("near", "1")]


def test_the_same_photo_in_two_classes_is_reported(planted):
    *_rest, original, copy, report, summary = planted
    assert summary["data_checks"]["duplicates"]["exact_cross_class"] >= 1
    pairs = [r for r in _rows(report / "duplicates.csv") if {r["path_a"], r["path_b"]} == {str(original), str(copy)}]
    assert [(r["kind"], r["crosses_classes"]) for r in pairs] == [("exact", "1")]
