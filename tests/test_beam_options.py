"""Beam's pipeline options are checked before any pipeline is built: an option that neither the command nor Beam
knows, and a runner that Beam does not know, are refused in one sentence (exit 2) instead of being dropped or ending
in a traceback.
"""
from __future__ import annotations

import pytest
from helpers import make_dataset, one_sentence

from bottleneck.cli.beam_options import check_pipeline_options
from bottleneck.cli.commands import beam_bottlenecks_main
from bottleneck.cli.label_image import label_image_main
from bottleneck.errors import UserError


@pytest.fixture
def command_args(tmp_path, tiny_module):
    images = make_dataset(tmp_path / "images", {"red": 2, "green": 2})
    return [f"--image_dir={images}", f"--tfhub_module={tiny_module}", f"--bottleneck_dir={tmp_path / 'cache'}",
            "--precision=float32"]


def test_options_that_beam_knows_pass(tmp_path):
    check_pipeline_options(["--runner=DirectRunner", "--direct_num_workers", "2", f"--temp_location={tmp_path}",
                            "--project=p", "--runner", "direct"])


def test_a_misspelt_option_is_refused_and_the_close_flag_named(command_args, tmp_path, capsys):
    code = beam_bottlenecks_main([*command_args, f"--outputdir={tmp_path / 'shards'}"])

    line = one_sentence(capsys.readouterr().err, "beam-bottlenecks")
    assert code == 2
    assert "--outputdir" in line and "--output_dir" in line
    assert not (tmp_path / "cache").exists() and not (tmp_path / "shards").exists()


def test_an_unknown_runner_is_refused_with_the_runners_beam_knows(command_args, capsys):
    code = beam_bottlenecks_main([*command_args, "--runner", "Bogus"])

    line = one_sentence(capsys.readouterr().err, "beam-bottlenecks")
    assert code == 2
    assert "Bogus" in line and "DirectRunner" in line and "DataflowRunner" in line


def test_label_image_refuses_an_unknown_beam_option_before_reading_the_graph(tmp_path, capsys):
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"not read")
    code = label_image_main([f"--graph={tmp_path / 'missing.pb'}", f"--beam_output={tmp_path / 'out'}",
                             "--runnner=DirectRunner", str(image)])

    line = one_sentence(capsys.readouterr().err)
    assert code == 2 and "--runnner" in line and "--runner" in line


def test_a_stray_word_is_refused_too():
    with pytest.raises(UserError, match="'stray'"):
        check_pipeline_options(["stray"])
