"""bottleneck/atomic.py: a file is replaced whole or not at all, and the outputs of an all_or_nothing block are
replaced together or none of them, even when a signal arrives between two renames."""
from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

from bottleneck import atomic

# --------------------------------------------------------------------------- one file


def test_a_reader_sees_the_old_file_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "out" / "graph.pb"
    target.parent.mkdir()
    target.write_bytes(b"old graph")
    with atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"new gra")  # half written
        assert target.read_bytes() == b"old graph"
        with open(tmp, "ab") as f:
            f.write(b"ph")
        assert target.read_bytes() == b"old graph"
    assert target.read_bytes() == b"new graph"
    assert sorted(p.name for p in target.parent.iterdir()) == ["graph.pb"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "labels.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed half way")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.txt"]


def test_write_errors_name_the_output_not_the_temporary_file(tmp_path, monkeypatch):
    real_write_bytes = Path.write_bytes

    def full_disk(self, data):
        if self.name.startswith(".graph.pb."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError) as exc:
        atomic.write_bytes_atomic(tmp_path / "graph.pb", b"data")
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(tmp_path / "graph.pb")
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "a file").write_text("x")
    with pytest.raises(NotADirectoryError) as exc:
        atomic.write_bytes_atomic(tmp_path / "a file" / "graph.pb", b"data")
    assert "is a file" in exc.value.strerror and exc.value.filename == str(tmp_path / "a file" / "graph.pb")


# --------------------------------------------------------------------------- all or nothing


def test_all_or_nothing_replaces_every_file_or_none(tmp_path):
    graph, labels = tmp_path / "graph.pb", tmp_path / "labels.txt"
    graph.write_bytes(b"old graph")
    labels.write_text("old labels\n")
    committed = []

    with pytest.raises(OSError):
        with atomic.all_or_nothing():
            atomic.write_bytes_atomic(graph, b"new graph")
            atomic.defer(lambda: committed.append("saved model"), lambda: committed.append("discarded"))
            assert graph.read_bytes() == b"old graph"  # nothing moves before the block ends
            raise OSError(errno.ENOSPC, "No space left on device")
    assert graph.read_bytes() == b"old graph" and labels.read_text() == "old labels\n"
    assert committed == ["discarded"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.pb", "labels.txt"]

    with atomic.all_or_nothing():
        atomic.write_bytes_atomic(graph, b"new graph")
        with atomic.all_or_nothing():  # nested blocks join the outer one
            atomic.write_text_atomic(labels, "new labels\n")
        atomic.defer(lambda: committed.append("saved model"))
        assert labels.read_text() == "old labels\n"
    assert graph.read_bytes() == b"new graph" and labels.read_text() == "new labels\n"
    assert committed == ["discarded", "saved model"]

    atomic.defer(lambda: committed.append("now"))  # outside a block: at once
    assert committed[-1] == "now"


def test_a_folder_in_the_way_of_a_later_output_leaves_the_earlier_ones_untouched(tmp_path):
    graph, labels = tmp_path / "graph.pb", tmp_path / "labels.txt"
    graph.write_bytes(b"old graph")
    labels.mkdir()  # appears after the checks, while the run is training

    with pytest.raises(IsADirectoryError):
        with atomic.all_or_nothing():
            atomic.write_bytes_atomic(graph, b"new graph")
            atomic.write_text_atomic(labels, "new labels\n")
    assert graph.read_bytes() == b"old graph" and labels.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.pb", "labels.txt"]


def test_two_writes_to_one_path_in_a_block_are_refused_and_nothing_moves(tmp_path):
    target = tmp_path / "graph.pb"
    target.write_bytes(b"old graph")
    with pytest.raises(FileExistsError):
        with atomic.all_or_nothing():
            atomic.write_bytes_atomic(target, b"the graph")
            atomic.write_text_atomic(target, "the labels\n")
    assert target.read_bytes() == b"old graph" and sorted(p.name for p in tmp_path.iterdir()) == ["graph.pb"]


def test_a_signal_during_the_renames_waits_until_every_output_is_in_place(tmp_path):
    from bottleneck.cli.guard import sigterm_unwinds
    from bottleneck.errors import Terminated

    graph, labels = tmp_path / "graph.pb", tmp_path / "labels.txt"
    graph.write_bytes(b"old graph")
    labels.write_text("old labels\n")
    with pytest.raises(Terminated), sigterm_unwinds():
        with atomic.all_or_nothing():
            atomic.write_bytes_atomic(graph, b"new graph")
            atomic.defer(lambda: os.kill(os.getpid(), signal.SIGTERM))  # arrives between two renames
            atomic.write_text_atomic(labels, "new labels\n")
    assert graph.read_bytes() == b"new graph" and labels.read_text() == "new labels\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["graph.pb", "labels.txt"]
