"""Every command's temporary files go in one folder of its own, removed when the command ends, however it ends, so a
nightly job never fills the temporary folder (Beam's beam-temp* and beam-pipeline-temp* folders, TensorFlow's
__autograph_generated_file*.py files).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import pytest
from helpers import ROOT, make_dataset, retrain_args

from bottleneck.cli.guard import run_guarded
from bottleneck.errors import UserError


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """A temporary folder of the test's own, where the command's run folder is made."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setenv("TMPDIR", str(root))
    return root


def seen_inside(record):
    """A command body that records where temporary files go while it runs, and leaves one there."""
    def body():
        record["tempdir"] = tempfile.gettempdir()
        record["TMPDIR"] = os.environ["TMPDIR"]
        with open(os.path.join(tempfile.mkdtemp(prefix="beam-pipeline-temp"), "left.txt"), "w") as f:
            f.write("a library's leftover")
        return 0
    return body


def raising(exc):
    def body():
        tempfile.mkdtemp(prefix="beam-temp-")
        raise exc
    return body


def test_a_command_runs_in_a_temporary_folder_of_its_own_that_is_removed_at_its_end(temp_root):
    record = {}
    assert run_guarded("retrain.py", seen_inside(record)) == 0

    inside = record["tempdir"]
    assert os.path.dirname(inside) == str(temp_root) and record["TMPDIR"] == inside
    assert list(temp_root.iterdir()) == []
    assert tempfile.gettempdir() == str(temp_root) and os.environ["TMPDIR"] == str(temp_root)


@pytest.mark.parametrize("exc, code", [(UserError("No."), 2), (KeyboardInterrupt(), 130), (RuntimeError("bug"), None)])
def test_the_folder_goes_on_errors_and_interruptions_too(temp_root, exc, code, capsys):
    if code is None:
        with pytest.raises(RuntimeError):
            run_guarded("retrain.py", raising(exc))
    else:
        assert run_guarded("retrain.py", raising(exc)) == code
    assert list(temp_root.iterdir()) == []


def test_a_beam_run_leaves_nothing_in_the_temporary_folder(temp_root, tmp_path, tiny_module, capsys):
    from bottleneck.cli.commands import beam_bottlenecks_main

    images = make_dataset(tmp_path / "images", {"red": 3, "green": 3})
    code = beam_bottlenecks_main([f"--image_dir={images}", f"--tfhub_module={tiny_module}",
                                  f"--bottleneck_dir={tmp_path / 'cache'}", "--precision=float32"])

    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in temp_root.iterdir()) == []


def test_retrain_stopped_by_sigterm_and_a_tflite_run_leave_no_temporary_files(tmp_path, tiny_module):
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    env = {**os.environ, "TMPDIR": str(temp_root)}
    args = retrain_args(tmp_path, images, tiny_module, f"--tflite_output={tmp_path / 'out' / 'model.tflite'}",
                        f"--saved_model_dir={tmp_path / 'out' / 'saved'}", "--quiet", steps=20)
    done = subprocess.run([sys.executable, str(ROOT / "retrain.py"), *args], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "model.tflite").is_file()
    assert sorted(p.name for p in temp_root.iterdir()) == []

    # Stopped while it runs: the run folder goes all the same.
    slow = retrain_args(tmp_path / "second", images, tiny_module, "--quiet", steps=200_000)
    process = subprocess.Popen([sys.executable, str(ROOT / "retrain.py"), *slow], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_a_run_folder(temp_root, process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143
    finally:
        process.kill()
    assert sorted(p.name for p in temp_root.iterdir()) == []


def _wait_for_a_run_folder(root, process, timeout=120):
    import time

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if any(root.iterdir()):
            time.sleep(3)  # well into the run
            return
        assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(0.2)
    raise AssertionError("the run made no folder in its temporary folder")
