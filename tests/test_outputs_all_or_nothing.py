"""Previous outputs survive every failed run: a failure while placing them, a failed accuracy gate after
intermediate graphs were saved, two outputs on one path, and SIGTERM or SIGINT in the middle of the export."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, make_dataset, retrain_args, the_error, write_photo
from helpers import run_retrain as run

STEPS = 10


def snapshot(folder: Path, skip=("logs", "bottlenecks")) -> dict[str, bytes]:
    """Every output file below ``folder`` (relative path -> bytes), the cache and TensorBoard logs aside."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] not in skip}


def leftovers(folder: Path) -> list[str]:
    """Temporary files, kept-aside previous versions, or temporary folders of an atomic write."""
    return sorted(p.name for p in folder.rglob("*")
                  if p.name.startswith(".") and (p.name.endswith((".part", ".previous")) or p.is_dir()))


def confusable(root: Path) -> Path:
    """Two classes holding the very same photos: no classifier reaches 100% on them."""
    for i in range(10):
        data = write_photo(root / "a" / f"p{i:02d}.jpg", (128, 128, 128), seed=300 + i).read_bytes()
        (root / "b").mkdir(parents=True, exist_ok=True)
        (root / "b" / f"p{i:02d}.jpg").write_bytes(data)
    return root


@pytest.fixture
def previous(tmp_path, tiny_module, caplog, capsys):
    """A successful run's outputs (graph, labels, checkpoint, SavedModel, report) and their bytes."""
    images = make_dataset(tmp_path / "two", {"red": 6, "green": 6})
    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, f"--saved_model_dir={tmp_path / 'out' / 'sm'}")
    assert code == 0, err
    return snapshot(tmp_path / "out")


# --------------------------------------------------------------------------- two-phase commit


def test_a_rename_that_fails_half_way_rolls_every_output_back(tmp_path, tiny_module, caplog, capsys,
                                                               monkeypatch, previous):
    """The graph, the checkpoint and the SavedModel are already in place when the labels cannot be: all go back."""
    three = make_dataset(tmp_path / "three", {"red": 6, "green": 6, "blue": 6})
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == "labels.txt" and Path(src).name.endswith(".part"):
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, _log, err = run(tmp_path, three, tiny_module, caplog, capsys, f"--saved_model_dir={tmp_path / 'out' / 'sm'}")

    assert code == 1
    line = the_error(err)
    assert "labels.txt" in line
    after = snapshot(tmp_path / "out")
    report = [k for k in previous if "_report/" in k]
    assert {k: after.get(k) for k in previous if k not in report} == {k: v for k, v in previous.items()
                                                                        if k not in report}
    assert leftovers(tmp_path / "out") == []


def test_a_failed_gate_leaves_the_labels_of_the_previous_run_even_with_intermediate_graphs(
    tmp_path, tiny_module, caplog, capsys, previous
):
    code, _log, err = run(tmp_path, confusable(tmp_path / "same"), tiny_module, caplog, capsys,
                          "--intermediate_store_frequency=5", "--assert_accuracy_at_least=100",
                          f"--saved_model_dir={tmp_path / 'out' / 'sm'}", steps=12)

    assert code == 1
    assert "previous outputs were left untouched" in the_error(err)
    after = snapshot(tmp_path / "out", skip=("logs", "bottlenecks", "intermediate"))
    assert after == previous
    intermediate = tmp_path / "out" / "intermediate"
    assert (intermediate / "intermediate_5.pb").is_file()
    assert (intermediate / "output_labels.txt").read_text() == "a\nb\n"  # the labels of those graphs, beside them


@pytest.mark.parametrize("flags", [
    ("--output_labels={out}/graph.pb",),
    ("--checkpoint_path={out}/labels",  "--output_labels={out}/labels.index"),
    ("--tflite_output={out}/labels.txt",),
    ("--report_dir={out}/sm", "--saved_model_dir={out}/sm"),
    ("--saved_model_dir={out}",),  # the SavedModel folder would swallow every other output
])
def test_two_outputs_on_one_path_are_refused_before_any_work(tmp_path, tiny_module, caplog, capsys, previous, flags):
    out = tmp_path / "out"
    code, log, err = run(tmp_path, make_dataset(tmp_path / "three", {"red": 6, "green": 6, "blue": 6}), tiny_module,
                         caplog, capsys, *(f.format(out=out) for f in flags))

    assert code == 2
    line = the_error(err)
    assert "--" in line and ("same" in line or "lies in --saved_model_dir" in line)
    assert "bottlenecks" not in log  # refused before any image was read
    assert snapshot(out) == previous


# --------------------------------------------------------------------------- signals during the export

_SLOW_EXPORT = """
import sys, time
import bottleneck.export.outputs as export
real = export.write_labels
def slow(*args, **kwargs):  # the graph's temporary file is written by now: the signal lands mid-export
    print("EXPORTING", file=sys.stderr, flush=True)
    time.sleep(60)
    return real(*args, **kwargs)
export.write_labels = slow
from bottleneck.cli.retrain import retrain_main
sys.exit(retrain_main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig, code, word", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_a_signal_during_the_export_leaves_no_temporary_file_and_the_previous_outputs(
    tmp_path, tiny_module, previous, sig, code, word
):
    out = tmp_path / "out"
    args = retrain_args(tmp_path, make_dataset(tmp_path / "three", {"red": 6, "green": 6, "blue": 6}), tiny_module,
                        f"--saved_model_dir={out / 'sm'}", steps=STEPS)
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_EXPORT, *args], cwd=ROOT, stderr=err,
                                stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while b"EXPORTING" not in err_path.read_bytes():
            assert proc.poll() is None, err_path.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert any(p.name.endswith(".part") for p in out.rglob(".*"))  # the graph waits in its temporary file
        proc.send_signal(sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err_path.read_text()
    assert proc.returncode == code, stderr
    assert f"retrain.py: {word}." in stderr and "Traceback" not in stderr
    assert leftovers(out) == []
    assert snapshot(out) == previous


def test_a_saved_model_whose_own_swap_fails_keeps_the_previous_one(tmp_path, tiny_module, caplog, capsys,
                                                                    monkeypatch, previous):
    sm = tmp_path / "out" / "sm"
    real_rename = Path.rename

    def rename(self, target):
        if Path(target) == sm and self.name == "model":  # the new SavedModel cannot be moved into place
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(target))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    code, _log, err = run(tmp_path, make_dataset(tmp_path / "three", {"red": 6, "green": 6, "blue": 6}), tiny_module,
                          caplog, capsys, f"--saved_model_dir={sm}")
    assert code == 1
    the_error(err)
    after = snapshot(tmp_path / "out")
    assert {k: v for k, v in after.items() if "_report/" not in k} == {
        k: v for k, v in previous.items() if "_report/" not in k}
    assert leftovers(tmp_path / "out") == []
