"""label_image.py errors: bad images are reported one by one; bad graphs and labels are one sentence."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, one_sentence, write_photo

from bottleneck.cli.label_image import label_image_main

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}


def classify(trained_graph, capsys, *args, graph=None, labels=None):
    """label_image.py in-process: (exit code, stdout, stderr)."""
    argv = [f"--graph={graph or trained_graph.graph}", f"--labels={labels or trained_graph.labels}", *map(str, args)]
    code = label_image_main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def photo(folder: Path, name: str, colour: str, seed: int) -> Path:
    return write_photo(folder / name, COLOURS[colour], seed=seed, fmt="PNG" if name.endswith(".png") else "JPEG")


# --------------------------------------------------------------------------- bad images


def test_a_bad_image_gets_an_error_line_and_the_others_are_still_classified(trained_graph, tmp_path, capsys):
    good_red = photo(tmp_path, "a red one.jpg", "red", 1)
    good_blue = photo(tmp_path, "blue.png", "blue", 2)
    text = tmp_path / "text.jpg"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good_red.read_bytes()[:300])
    missing = tmp_path / "missing.jpg"

    code, out, err = classify(trained_graph, capsys, text, good_red, empty, missing, truncated, good_blue)

    assert code == 2  # non-zero: some images failed
    assert "Traceback" not in err
    errors = err.splitlines()
    assert len(errors) == 4, err
    for path, reason in ((text, "not an image"), (empty, "empty file"), (missing, "No such file"),
                         (truncated, "JPEG")):
        line = next(line for line in errors if f" {path}: " in line)
        assert line.startswith(f"label_image.py: error: cannot classify {path}: ") and reason in line, line
    lines = out.splitlines()
    # Only the good images are printed: each path, then its labels, best first.
    assert [line for line in lines if "/" in line] == [str(good_red), str(good_blue)]
    red_at, blue_at = lines.index(str(good_red)), lines.index(str(good_blue))
    assert lines[red_at + 1].split()[0] == "red"
    assert lines[blue_at + 1].split()[0] == "blue"


def test_a_folder_with_a_bad_file_classifies_the_rest(trained_graph, tmp_path, capsys):
    folder = tmp_path / "photos"
    good = [photo(folder, "g1.jpg", "green", 3), photo(folder / "sub", "r1.jpg", "red", 4)]
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    (folder / "notes.txt").write_text("not an image name: ignored")
    (folder / "._g1.jpg").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork: ignored

    code, out, err = classify(trained_graph, capsys, folder)

    assert code == 2
    assert err.splitlines() == [f"label_image.py: error: cannot classify {folder / 'broken.jpg'}: "
                                + err.split(": ", 3)[-1].rstrip("\n")]
    for path in good:
        assert str(path) in out.splitlines()


def test_all_good_images_exit_0(trained_graph, tmp_path, capsys):
    red, green = photo(tmp_path, "r.jpg", "red", 5), photo(tmp_path, "g.jpg", "green", 6)
    code, out, err = classify(trained_graph, capsys, red, green)
    assert code == 0 and err == ""


def test_an_image_name_that_is_not_utf8_is_classified(trained_graph, tmp_path, capsys):
    path = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(path, "wb") as f:
        f.write(photo(tmp_path, "src.jpg", "red", 7).read_bytes())
    broken = os.fsencode(tmp_path) + b"/\xe9t\xe9.jpg"
    with open(broken, "wb") as f:
        f.write(b"broken")

    code, out, err = classify(trained_graph, capsys, os.fsdecode(path), os.fsdecode(broken))

    assert code == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "red" in out.split()


# --------------------------------------------------------------------------- bad graphs and labels


def _graph_missing(tmp_path, trained_graph):
    return tmp_path / "nowhere.pb"


def _graph_text(tmp_path, trained_graph):
    (tmp_path / "graph.pb").write_text("this is not a graph\n")
    return tmp_path / "graph.pb"


def _graph_empty(tmp_path, trained_graph):
    (tmp_path / "graph.pb").write_bytes(b"")
    return tmp_path / "graph.pb"


def _graph_garbage(tmp_path, trained_graph):
    (tmp_path / "graph.pb").write_bytes(bytes(range(256)) * 8)
    return tmp_path / "graph.pb"


def _graph_truncated(tmp_path, trained_graph):
    data = trained_graph.graph.read_bytes()
    (tmp_path / "graph.pb").write_bytes(data[: len(data) // 2])
    return tmp_path / "graph.pb"


def _graph_is_a_folder(tmp_path, trained_graph):
    (tmp_path / "saved_model").mkdir()
    return tmp_path / "saved_model"


def _graph_is_labels(tmp_path, trained_graph):
    return trained_graph.labels


@pytest.mark.parametrize(
    "make_graph, words",
    [
        (_graph_missing, "not found"),
        (_graph_text, "is not a TensorFlow GraphDef (.pb) file"),
        (_graph_empty, "is not a TensorFlow GraphDef (.pb) file"),
        (_graph_garbage, "is not a TensorFlow GraphDef (.pb) file"),
        (_graph_truncated, "is not a TensorFlow GraphDef (.pb) file"),
        (_graph_is_a_folder, "is a folder"),
        (_graph_is_labels, "is not a TensorFlow GraphDef (.pb) file"),
    ],
)
def test_a_missing_or_invalid_graph_is_one_sentence(trained_graph, tmp_path, capsys, make_graph, words):
    image = photo(tmp_path, "r.jpg", "red", 8)

    code, out, err = classify(trained_graph, capsys, image, graph=make_graph(tmp_path, trained_graph))

    assert code == 2
    assert words in one_sentence(err)
    assert out == ""


@pytest.mark.parametrize("flag, name", [("--input_layer", "input"), ("--output_layer", "softmax")])
def test_a_wrong_tensor_name_is_one_sentence(trained_graph, tmp_path, capsys, flag, name):
    code, out, err = classify(trained_graph, capsys, f"{flag}={name}", photo(tmp_path, "r.jpg", "red", 9))
    assert code == 2
    line = one_sentence(err)
    assert f"'{name}'" in line and flag in line


def _labels_missing(tmp_path, trained_graph):
    return tmp_path / "nowhere.txt"


def _labels_empty(tmp_path, trained_graph):
    (tmp_path / "labels.txt").write_text("")
    return tmp_path / "labels.txt"


def _labels_too_few(tmp_path, trained_graph):
    (tmp_path / "labels.txt").write_text("blue\ngreen\n")
    return tmp_path / "labels.txt"


def _labels_too_many(tmp_path, trained_graph):
    (tmp_path / "labels.txt").write_text("blue\ngreen\nred\nyellow\n")
    return tmp_path / "labels.txt"


def _labels_not_utf8(tmp_path, trained_graph):
    (tmp_path / "labels.txt").write_bytes(b"blue\ngr\xffen\nred\n")
    return tmp_path / "labels.txt"


def _labels_binary(tmp_path, trained_graph):
    return trained_graph.graph


def _labels_is_a_folder(tmp_path, trained_graph):
    (tmp_path / "labels").mkdir()
    return tmp_path / "labels"


@pytest.mark.parametrize(
    "make_labels, words",
    [
        (_labels_missing, "not found"),
        (_labels_empty, "has 0 labels but the graph"),
        (_labels_too_few, "has 2 labels but the graph"),
        (_labels_too_many, "has 4 labels but the graph"),
        (_labels_not_utf8, "not UTF-8 text"),
        (_labels_binary, "not UTF-8 text"),
        (_labels_is_a_folder, "is a folder"),
    ],
)
def test_a_missing_invalid_or_mismatched_labels_file_is_one_sentence(trained_graph, tmp_path, capsys, make_labels,
                                                                     words):
    image = photo(tmp_path, "r.jpg", "red", 10)

    code, out, err = classify(trained_graph, capsys, image, labels=make_labels(tmp_path, trained_graph))

    assert code == 2
    assert words in one_sentence(err)
    assert out == ""


def test_no_image_given_is_one_sentence(trained_graph, capsys):
    code, out, err = classify(trained_graph, capsys)
    assert code == 2
    assert "No image given" in one_sentence(err)


# --------------------------------------------------------------------------- a real process


def test_label_image_process_reports_bad_images_on_stderr_without_noise(trained_graph, tmp_path):
    good = photo(tmp_path, "green one.jpg", "green", 11)
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    # stdout block-buffered, as a pipe is by default: the process skips Python's teardown only after flushing it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    result = subprocess.run(
        [sys.executable, "label_image.py", *trained_graph.flags, str(bad), str(good)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 2
    # stderr holds the one error line: no traceback, no TensorFlow start-up chatter.
    expected = f"label_image.py: error: cannot classify {bad}: not an image (looks like text)"
    assert result.stderr.splitlines() == [expected]
    lines = result.stdout.splitlines()
    assert lines[0] == str(good) and lines[1].split()[0] == "green"
