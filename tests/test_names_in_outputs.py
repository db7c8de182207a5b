"""File names in every output, by the one rule of data/names.py: each valid Unicode name written exactly (CSV
quoting, JSON strings), each name that is not UTF-8 written reversibly (its bytes in hex beside its text), and no
command crashing on either; the report folder is written whole or not at all."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import make_dataset, retrain_args, write_photo

from bottleneck.cli.label_image import label_image_main
from bottleneck.cli.retrain import retrain_main
from bottleneck.data.names import from_fields, name_cells, name_fields, one_line

# Valid Unicode that a one-line display escapes but every machine format must carry exactly.
UNICODE_NAMES = ["tab\there.jpg", "new\nline.jpg", "carriage\rreturn.jpg", "line\u2028separator.jpg",
                 'comma, "quote".jpg', "a literal \\xe9 backslash.jpg"]
LATIN_FOLDER = b"cl\xe9ss"
LATIN_FILE = b"caf\xe9.jpg"


def latin(folder: Path, *parts: bytes) -> Path:
    return Path(os.fsdecode(b"/".join([os.fsencode(folder), *parts])))


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("name", [*UNICODE_NAMES, os.fsdecode(LATIN_FILE), os.fsdecode(b"/a/cl\xe9ss/caf\xe9.jpg"),
                                  os.fsdecode(b"\\xe9 and \xe9.jpg")])
def test_every_name_comes_back_exactly_from_json_and_csv(name):
    text = json.dumps(name_fields(name), ensure_ascii=False)
    back = json.loads(text.encode("utf-8").decode("utf-8"))  # valid UTF-8: no lone surrogates
    assert from_fields(back["path"], back.get("path_bytes")) == name
    buffer = io.StringIO()
    csv.writer(buffer).writerow(name_cells(name))
    row = next(csv.reader(io.StringIO(buffer.getvalue().encode("utf-8").decode("utf-8"), newline="")))
    assert from_fields(*row) == name


def test_a_valid_unicode_name_is_its_own_text_and_only_other_names_get_bytes():
    for name in UNICODE_NAMES:
        assert name_fields(name) == {"path": name} and name_cells(name) == [name, ""]
    fields = name_fields(os.fsdecode(LATIN_FILE), "path_a")
    assert fields == {"path_a": "caf\\xe9.jpg", "path_a_bytes": LATIN_FILE.hex()}
    assert one_line("tab\there.jpg") == "tab\\there.jpg"  # shown to people on one line, as before


# --------------------------------------------------------------------------- retrain.py's report


@pytest.fixture
def hostile_images(tmp_path) -> Path:
    """Three classes, one a folder whose name is Latin-1; byte-identical copies across classes under hostile
    names, so that the duplicates CSV and summary.json must name them."""
    root = make_dataset(tmp_path / "images", {"red": 12, "green": 12})
    os.mkdir(latin(root, LATIN_FOLDER))
    for i in range(12):
        write_photo(latin(root, LATIN_FOLDER, b"caf\xe9 %d.jpg" % i), (40, 60, 220), seed=500 + i)
    shutil.copy(root / "red" / "img_000.jpg", latin(root, LATIN_FOLDER, LATIN_FILE))
    for i, name in enumerate(UNICODE_NAMES):
        shutil.copy(root / "red" / f"img_{i + 1:03d}.jpg", root / "green" / name)
    return root


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))


def _named_in_json(value, found):
    """Every image a JSON document names: "path" fields with their _bytes, and lists of test paths."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "path":
                if isinstance(item, str):
                    found.append(from_fields(item, value.get(f"{key}_bytes")))
            elif key == "test_paths":
                hexes = value.get(f"{key}_bytes") or [""] * len(item)
                found += [from_fields(text, hex_bytes) for text, hex_bytes in zip(item, hexes)]
            else:
                _named_in_json(item, found)
    elif isinstance(value, list):
        for item in value:
            _named_in_json(item, found)
    return found


def test_the_report_names_every_file_exactly_whatever_its_name(tmp_path, hostile_images, tiny_module, capsys):
    code = retrain_main(retrain_args(tmp_path, hostile_images, tiny_module, "--testing_percentage=30", steps=20))
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    report = tmp_path / "out" / "graph_report"
    assert (report / "report.html").is_file()

    duplicates = _rows(report / "duplicates.csv")
    named = {from_fields(row[f"path_{side}"], row[f"path_{side}_bytes"]) for row in duplicates for side in "ab"}
    assert all(os.path.isfile(path) for path in named)
    wanted = {str(latin(hostile_images, LATIN_FOLDER, LATIN_FILE))} | {str(hostile_images / "green" / name)
                                                                       for name in UNICODE_NAMES}
    assert wanted <= named, wanted - named
    for row in _rows(report / "suspected_label_errors.csv"):
        assert os.path.isfile(from_fields(row["path"], row["path_bytes"]))

    summary = json.loads((report / "summary.json").read_bytes().decode("utf-8"))
    assert "\\udc" not in (report / "summary.json").read_text(encoding="utf-8")
    files = _named_in_json(summary, [])
    assert files and all(os.path.isfile(path) for path in files), [p for p in files if not os.path.isfile(p)]
    assert any(os.fsencode(path).endswith(b"\xe9.jpg") for path in files)  # a Latin-1 name is among them


def test_a_failure_while_writing_the_report_leaves_the_previous_report_whole(tmp_path, dataset, tiny_module, capsys,
                                                                             monkeypatch):
    from bottleneck.report import summary as summary_module

    args = retrain_args(tmp_path, dataset, tiny_module, steps=20)
    assert retrain_main(args) == 0
    report = tmp_path / "out" / "graph_report"
    before = {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()}
    assert {"summary.json", "report.html", "duplicates.csv", "suspected_label_errors.csv"} <= set(before)

    def full_disk(*_args, **_kwargs):  # the page comes after the plots and the CSVs
        raise OSError(errno.ENOSPC, "No space left on device", str(report / "report.html"))

    monkeypatch.setattr(summary_module, "write_page", full_disk)
    shutil.copy(dataset / "green" / "img_000.jpg", dataset / "red" / "a copy.jpg")  # a new duplicates.csv
    capsys.readouterr()
    assert retrain_main([*args, "--how_many_training_steps=30"]) == 1  # new curves, new summary
    assert "the report could not be" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in report.iterdir() if p.is_file()}
    report_files = set(before) - {"run_images.jsonl"}  # the run's record is written before the report
    assert {name: after[name] for name in report_files} == {name: before[name] for name in report_files}
    assert not [name for name in after if name.endswith((".part", ".previous"))]


# --------------------------------------------------------------------------- label_image.py


@pytest.fixture
def hostile_photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    for i, name in enumerate(UNICODE_NAMES):
        write_photo(folder / name, (220, 40, 40), seed=10 + i)
    write_photo(latin(folder, LATIN_FILE), (40, 200, 60), seed=30)
    return folder


def _expected(folder: Path) -> set[str]:
    return {str(folder / name) for name in UNICODE_NAMES} | {str(latin(folder, LATIN_FILE))}


def test_label_image_csv_rows_name_their_files_exactly(trained_graph, hostile_photos, capsys):
    assert label_image_main([*trained_graph.flags, "--output_format=csv", str(hostile_photos)]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out.encode("utf-8").decode("utf-8"), newline="")))
    assert {from_fields(row["path"], row["path_bytes"]) for row in rows} == _expected(hostile_photos)


def test_label_image_json_objects_name_their_files_exactly(trained_graph, hostile_photos, capsys):
    assert label_image_main([*trained_graph.flags, "--output_format=json", str(hostile_photos)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.encode("utf-8").decode("utf-8").splitlines()]
    assert {from_fields(r["path"], r.get("path_bytes")) for r in records} == _expected(hostile_photos)


@pytest.mark.parametrize("output_format", ["csv", "json"])
def test_label_image_beam_output_names_every_file_exactly(trained_graph, hostile_photos, tmp_path, capsys,
                                                           output_format):
    shards = tmp_path / f"beam-{output_format}"
    code = label_image_main([*trained_graph.flags, f"--output_format={output_format}", f"--beam_output={shards}",
                             str(hostile_photos)])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    text = "".join(p.read_bytes().decode("utf-8") for p in sorted(shards.glob("predictions-*")))
    if output_format == "csv":
        rows = [row for row in csv.DictReader(io.StringIO(text, newline="")) if row["path"] != "path"]
        named = {from_fields(row["path"], row["path_bytes"]) for row in rows}
    else:
        named = {from_fields(r["path"], r.get("path_bytes")) for r in map(json.loads, text.splitlines())}
    assert named == _expected(hostile_photos)


# --------------------------------------------------------------------------- beam-bottlenecks


def test_beam_bottlenecks_computes_files_whose_names_are_not_utf8(tmp_path, tiny_module, capsys):
    from bottleneck.cli.commands import beam_bottlenecks_main
    from bottleneck.scale_out.beam_bottlenecks import read_skipped

    images = make_dataset(tmp_path / "images", {"red": 3, "green": 3})
    os.mkdir(latin(images, LATIN_FOLDER))
    for i in range(3):
        write_photo(latin(images, LATIN_FOLDER, b"caf\xe9 %d.jpg" % i), (40, 60, 220), seed=700 + i)
    broken = latin(images, LATIN_FOLDER, b"\xe9t\xe9 broken.jpg")
    broken.write_bytes(b"not an image")
    shards = tmp_path / "shards"
    code = beam_bottlenecks_main([f"--image_dir={images}", f"--tfhub_module={tiny_module}",
                                  f"--bottleneck_dir={tmp_path / 'bottlenecks'}", f"--output_dir={shards}",
                                  "--precision=float32"])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "10 images listed, 0 already computed, 9 bottlenecks computed, 1 skipped." in out
    records = read_skipped(shards)
    assert [from_fields(r["path"], r.get("path_bytes")) for r in records] == [str(broken)]
