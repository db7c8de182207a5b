"""label_image.py output formats and --evaluate, on a graph trained with the tiny module."""
import csv
import io
import json

import pytest
from helpers import make_dataset, write_photo

from bottleneck.cli.label_image import label_image_main


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A red photo, a blue one and a file that is no image."""
    test = tmp_path_factory.mktemp("formats")
    write_photo(test / "one.jpg", (220, 40, 40), 101)
    write_photo(test / "two.png", (40, 60, 220), 102, fmt="PNG")
    (test / "broken.jpg").write_bytes(b"not a picture")
    return test


def test_csv_has_a_header_and_one_row_per_image(trained_graph, photos, capsys):
    code = label_image_main(trained_graph.flags + ["--output_format=csv", "--top_k=2", str(photos)])
    assert code == 2  # one image failed
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["broken.jpg", "one.jpg", "two.png"]
    assert rows[0]["error"] and rows[0]["label_1"] == ""
    assert (rows[1]["label_1"], rows[2]["label_1"]) == ("red", "blue")
    assert float(rows[1]["score_1"]) >= float(rows[1]["score_2"])
    assert set(rows[1]) == {"path", "label_1", "score_1", "label_2", "score_2", "error", "path_bytes"}
    assert rows[1]["path_bytes"] == ""  # only a name that is not UTF-8 has its bytes there


def test_json_is_one_object_per_image(trained_graph, photos, capsys):
    label_image_main(trained_graph.flags + ["--output_format=json", "--top_k=3", str(photos)])
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(objects) == 3
    broken, one, _two = objects
    assert broken["predictions"] == [] and "not an image" in broken["error"]
    assert one["error"] is None and [p["label"] for p in one["predictions"]][0] == "red"
    assert len(one["predictions"]) == 3
    assert sum(p["score"] for p in one["predictions"]) == pytest.approx(1, abs=1e-5)


def test_evaluate_reports_accuracy_and_confusion_against_folder_names(trained_graph, tmp_path, capsys):
    held_out = make_dataset(tmp_path / "held_out", {"red": 4, "green": 4, "blue": 4}, seed=9)
    assert label_image_main(trained_graph.flags + ["--evaluate", str(held_out)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "Accuracy = 100.0% (N=12)"
    assert "Confusion matrix" in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()[:1] in (["red"], ["blue"])}
    assert rows["blue"] == ["4", "0", "0"]  # labels are sorted: blue, green, red
    assert rows["red"] == ["0", "0", "4"]


def test_evaluate_refuses_images_outside_class_folders(trained_graph, photos, capsys):
    assert label_image_main(trained_graph.flags + ["--evaluate", str(photos)]) == 2
    assert "class folders" in capsys.readouterr().err
