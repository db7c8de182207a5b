"""label_image.py against hostile inputs: impossible sizes and normalisation, an output layer that is not a
score vector, folders with link loops, and file names that would break the output layouts."""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, one_sentence, write_photo

from bottleneck.cli.label_image import label_image_main
from bottleneck.data.names import from_fields, one_line, utf8_text


def classify(trained_graph, capsys, *args):
    code = label_image_main([*trained_graph.flags, *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def photo(tmp_path) -> Path:
    return write_photo(tmp_path / "p.jpg", (220, 40, 40), seed=1)


# --------------------------------------------------------------------------- flags


@pytest.mark.parametrize("flags, fragment", [
    (["--input_height=-5"], "--input_height must be a positive number of pixels"),
    (["--input_width=0"], "--input_width must be a positive number of pixels"),
    (["--input_std=0"], "--input_std cannot be 0"),
    (["--input_std=nan"], "--input_std must be a finite number"),
    (["--input_mean=inf"], "--input_mean must be a finite number"),
])
def test_impossible_sizes_and_normalisation_are_one_sentence(trained_graph, capsys, photo, flags, fragment):
    code, out, err = classify(trained_graph, capsys, *flags, photo)
    assert code == 2 and out == ""
    assert fragment in one_sentence(err)


@pytest.mark.parametrize("layer", ["Placeholder", "final_weights", "final_biases", "bottleneck"])
def test_an_output_layer_that_is_not_a_score_vector_is_refused(trained_graph, capsys, photo, layer):
    code, out, err = classify(trained_graph, capsys, f"--output_layer={layer}", photo)
    assert code == 2 and out == ""  # never printed as if they were scores
    line = one_sentence(err)
    # A per-image vector of the wrong length (the bottleneck) is caught by the label count instead.
    assert (layer in line and "not one score per class" in line) or "outputs 24 scores" in line


# --------------------------------------------------------------------------- folders


def test_a_symlink_loop_in_a_folder_is_walked_once(trained_graph, capsys, tmp_path):
    folder = tmp_path / "photos"
    write_photo(folder / "a.jpg", (220, 40, 40), seed=2)
    write_photo(folder / "sub" / "b.jpg", (40, 200, 60), seed=3)
    os.symlink(folder, folder / "again")  # contains itself
    (folder / "sub" / "up").symlink_to("..")  # and a relative loop
    code, out, err = classify(trained_graph, capsys, "--output_format=json", folder)
    assert code == 0, err
    paths = [json.loads(line)["path"] for line in out.splitlines()]
    assert sorted(Path(p).name for p in paths) == ["a.jpg", "b.jpg"]
    assert not any("again" in p or "/up/" in p for p in paths)


# --------------------------------------------------------------------------- names that break layouts

NASTY = ["carriage\rreturn.jpg", "new\nline.jpg", "tab\there.jpg", "ok,comma \"quote\".jpg"]
NOT_UTF8 = b"caf\xe9 latin-1.jpg"


@pytest.fixture
def nasty(tmp_path) -> Path:
    folder = tmp_path / "nasty"
    for i, name in enumerate(NASTY):
        write_photo(folder / name, (220, 40, 40), seed=10 + i)
    with open(os.fsencode(folder) + b"/" + NOT_UTF8, "wb") as f:
        f.write((folder / NASTY[0]).read_bytes())
    return folder


def test_csv_has_one_row_per_image_whatever_the_names(trained_graph, capsys, nasty):
    code, out, err = classify(trained_graph, capsys, "--output_format=csv", nasty)
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out, newline="")))
    assert len(rows) == 5  # CSV quoting keeps a line break inside its cell: one row per image
    names = sorted(Path(from_fields(row["path"], row["path_bytes"])).name for row in rows)
    assert names == sorted([*NASTY, os.fsdecode(NOT_UTF8)])  # every name exactly, the Latin-1 one by its bytes
    out.encode("utf-8")  # valid UTF-8: no lone surrogates
    assert "\\udc" not in out


def test_text_format_keeps_one_path_line_per_image(trained_graph, capsys, nasty):
    code, out, err = classify(trained_graph, capsys, "--top_k=1", nasty)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 * 5  # path line, then its one label line, for each image
    paths = lines[0::2]
    assert all(p.startswith(str(nasty)) for p in paths)
    assert any(p.endswith("new\\nline.jpg") for p in paths) and any(p.endswith("caf\\xe9 latin-1.jpg") for p in paths)


def test_json_paths_are_the_real_names_and_valid_utf8(trained_graph, capsys, nasty):
    code, out, err = classify(trained_graph, capsys, "--output_format=json", nasty)
    assert code == 0, err
    names = sorted(Path(json.loads(line)["path"]).name for line in out.splitlines())
    assert names == sorted([*NASTY, "caf\\xe9 latin-1.jpg"])  # JSON escapes line breaks itself
    assert "\\udc" not in out


def test_the_escaping_rules():
    assert utf8_text(os.fsdecode(b"/a/caf\xe9.jpg")) == "/a/caf\\xe9.jpg"
    assert one_line("a\nb\rc\td\x1be\x7f\u2028.jpg") == "a\\nb\\rc\\td\\x1be\\x7f\\u2028.jpg"
    assert one_line("naïve café 日本.jpg") == "naïve café 日本.jpg"


def test_an_error_line_names_the_file_on_one_line(trained_graph, capsys, tmp_path):
    bad = tmp_path / "broken\nname.jpg"
    bad.write_bytes(b"not an image")
    code, _out, err = classify(trained_graph, capsys, bad)
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("label_image.py: error: cannot classify ")
    assert "broken\\nname.jpg" in lines[0]


def test_sigterm_stops_label_image_cleanly(trained_graph, tmp_path):
    folder = tmp_path / "many"
    for i in range(400):
        write_photo(folder / f"p{i:03d}.jpg", (220, 40, 40), seed=i, size=(300, 240))
    proc = subprocess.Popen(
        [sys.executable, "label_image.py", *trained_graph.flags, "--batch_size=1", str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout.readline()  # classifying by now
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err.decode()
    assert b"label_image.py: terminated." in err and b"Traceback" not in err
