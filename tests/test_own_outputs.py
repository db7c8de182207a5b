"""The tool's own outputs and the user's own files: outputs inside --image_dir are never taken for images, every
output location is checked before the images are listed, files that the tool did not write are never deleted, and
a report folder never keeps files of an earlier run beside the new report.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import make_dataset, run_retrain, the_error

from bottleneck.data.walk import list_images
from bottleneck.export import outputs as export


def test_the_walk_leaves_out_outputs_inside_the_image_folder(tmp_path):
    images = make_dataset(tmp_path / "data", {"red": 3, "green": 3})
    report = images / "graph_report"
    report.mkdir()
    (report / "training_curves.png").write_bytes((images / "red" / "img_000.jpg").read_bytes())
    chosen = images / "red" / "named_as_output.jpg"  # an output file whose name looks like a photo
    chosen.write_bytes((images / "red" / "img_001.jpg").read_bytes())

    listing = list_images(images, [("--report_dir", report), ("--output_graph", chosen),
                                   ("--bottleneck_dir", tmp_path / "elsewhere")])

    assert [c.label for c in listing.classes] == ["green", "red"]
    assert "named_as_output.jpg" not in {im.name for c in listing.classes for im in c.images}
    assert listing.left_out_outputs == {report: "--report_dir", chosen: "--output_graph"}
    assert listing.ignored_files == 0  # an output is not counted among the files that are not images


def test_a_report_folder_inside_the_image_folder_never_becomes_a_class(tmp_path, tiny_module, caplog, capsys):
    images = make_dataset(tmp_path / "data", {"red": 8, "green": 8})
    outputs = (f"--output_graph={images / 'graph.pb'}", f"--output_labels={images / 'labels.txt'}",
               f"--summaries_dir={images / 'logs'}")
    code, _log, err = run_retrain(tmp_path, images, tiny_module, caplog, capsys, *outputs)
    assert code == 0, err
    assert (images / "graph_report" / "training_curves.png").is_file()

    code, log, err = run_retrain(tmp_path, images, tiny_module, caplog, capsys, *outputs)

    assert code == 0, err
    assert (images / "labels.txt").read_text().split("\n")[:-1] == ["green", "red"]
    assert "Found 16 images in 2 classes" in log
    left_out = [line for line in log.splitlines() if "Left out" in line]
    assert len(left_out) == 1 and "graph_report" in left_out[0] and "--report_dir" in left_out[0], log


def test_a_saved_model_folder_of_user_files_is_refused_before_the_images_are_listed(tmp_path, tiny_module, caplog,
                                                                                   capsys):
    images = make_dataset(tmp_path / "images", {"red": 4, "green": 4})
    mine = tmp_path / "my documents"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")

    code, log, err = run_retrain(tmp_path, images, tiny_module, caplog, capsys, f"--saved_model_dir={mine}")

    assert code == 2
    assert "--saved_model_dir" in the_error(err) and str(mine) in the_error(err)
    assert "Found" not in log and not (tmp_path / "out" / "bottlenecks").exists()
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"]


def test_the_users_files_in_a_saved_model_folder_survive_its_replacement(tiny_module, tmp_path):
    from bottleneck.model.modules import load_module

    module = load_module(str(tiny_module), None)
    weights, biases = np.zeros((24, 2), np.float32), np.array([0.0, 1.0], np.float32)
    target = tmp_path / "saved"
    export.write_saved_model(target, module, weights, biases, ["a", "b"], "final_result")
    (target / "NOTES.txt").write_text("served since May")
    (target / "assets.extra").mkdir()
    (target / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"\x00warm-up records")
    first = (target / "saved_model.pb").read_bytes()

    export.write_saved_model(target, module, weights, biases, ["x", "y"], "final_result")

    assert (target / "saved_model.pb").read_bytes() != first  # the model itself was replaced
    assert (target / "NOTES.txt").read_text() == "served since May"
    assert (target / "assets.extra" / "tf_serving_warmup_requests").read_bytes() == b"\x00warm-up records"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved"]  # no temporary folders left


def test_a_run_without_data_checks_leaves_no_earlier_check_files_beside_its_report(tmp_path, tiny_module, caplog,
                                                                                   capsys):
    images = make_dataset(tmp_path / "images", {"red": 8, "green": 8})
    report = tmp_path / "out" / "graph_report"
    code, _log, err = run_retrain(tmp_path, images, tiny_module, caplog, capsys)
    assert code == 0, err
    checks = [report / "suspected_label_errors.csv", report / "duplicates.csv"]
    assert all(path.is_file() for path in checks)
    (report / "my notes.txt").write_text("not the tool's")

    code, _log, err = run_retrain(tmp_path, images, tiny_module, caplog, capsys, "--skip_data_checks")

    assert code == 0, err
    assert not any(path.exists() for path in checks)
    assert (report / "my notes.txt").read_text() == "not the tool's"
    assert Path(report / "summary.json").is_file()


def test_beam_shards_inside_the_image_folder_are_not_a_class_of_the_next_pipeline(tmp_path, tiny_module, capsys):
    from bottleneck.cli.commands import beam_bottlenecks_main

    images = make_dataset(tmp_path / "images", {"red": 3, "green": 3})
    args = [f"--image_dir={images}", f"--tfhub_module={tiny_module}", f"--bottleneck_dir={tmp_path / 'cache'}",
            f"--output_dir={images / 'shards'}", "--precision=float32"]
    assert beam_bottlenecks_main(args) == 0
    assert "6 images listed" in capsys.readouterr().out

    assert beam_bottlenecks_main(args) == 0
    captured = capsys.readouterr()
    assert "6 images listed" in captured.out and "shards" not in captured.err
