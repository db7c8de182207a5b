"""label_image.py --threshold: 'unknown' below a score, in every output format; --evaluate shows coverage."""
import csv
import io
import json

import pytest
from helpers import make_dataset, write_photo

from bottleneck.cli.label_image import label_image_main


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """(unsure, sure): a photo of no class's colour, and a red one."""
    test = tmp_path_factory.mktemp("threshold")
    unsure = write_photo(test / "between.jpg", (130, 120, 130), 102)  # no class's colour
    sure = write_photo(test / "red.jpg", (220, 40, 40), 101)
    return unsure, sure


def _scores(flags, photos, capsys):
    unsure, sure = photos
    capsys.readouterr()
    label_image_main(flags + ["--output_format=json", str(unsure), str(sure)])
    return [json.loads(line)["predictions"][0]["score"] for line in capsys.readouterr().out.splitlines()]


def test_json_and_csv_answer_unknown_only_below_the_threshold(trained_graph, photos, capsys):
    flags, (unsure, sure) = trained_graph.flags, photos
    low, high = _scores(flags, photos, capsys)
    assert low < high
    threshold = (low + high) / 2
    label_image_main(flags + ["--output_format=json", f"--threshold={threshold}", str(unsure), str(sure)])
    answers = [json.loads(line)["answer"] for line in capsys.readouterr().out.splitlines()]
    assert answers == ["unknown", "red"]
    label_image_main(flags + ["--output_format=csv", f"--threshold={threshold}", "--top_k=1", str(unsure), str(sure)])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["answer"] for r in rows] == ["unknown", "red"] and list(rows[0])[:2] == ["path", "answer"]


def test_text_prints_unknown_before_the_scores(trained_graph, photos, capsys):
    flags, (unsure, sure) = trained_graph.flags, photos
    low, high = _scores(flags, photos, capsys)
    assert label_image_main(flags + [f"--threshold={(low + high) / 2}", "--top_k=2", str(unsure)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "unknown" and len(lines) == 3
    assert label_image_main(flags + [f"--threshold={(low + high) / 2}", "--top_k=2", str(sure)]) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[0] == "red"


def test_evaluate_shows_accuracy_against_coverage(trained_graph, tmp_path, capsys):
    held_out = make_dataset(tmp_path / "held_out", {"red": 4, "green": 4, "blue": 4}, seed=9)
    assert label_image_main(trained_graph.flags + ["--evaluate", "--threshold=0.999999", str(held_out)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("Accuracy against coverage"):].splitlines()[2:]
    thresholds = [float(line.split()[0]) for line in table]
    assert thresholds == [0.0, 0.5, 0.7, 0.9, 1.0]  # 0.999999 printed with two decimals
    assert table[0].split()[1:3] == ["100.0%", "100.0%"] and "(12/12)" in table[0]


def test_a_threshold_outside_0_to_1_is_refused(trained_graph, photos, capsys):
    _unsure, sure = photos
    assert label_image_main(trained_graph.flags + ["--threshold=1.5", str(sure)]) == 2
    assert "--threshold is a score between 0 and 1" in capsys.readouterr().err
