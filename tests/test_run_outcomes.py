"""What a run leaves: its exit code, the previous outputs after a failed gate or a failed write, the folders the
user names, and a cache that a SIGKILL or a second run at the same time cannot spoil.

Most runs are in-process (bottleneck.cli.retrain.retrain_main); real processes are used
only where a process matters: SIGKILL at several points, and two runs at once.
"""
from __future__ import annotations

import errno
import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, make_dataset, retrain_args, the_error, write_photo

from bottleneck.cli.retrain import retrain_main

STEPS = 30


# --------------------------------------------------------------------------- helpers


_run_number = itertools.count()


def run(tmp_path, image_dir, module, caplog, capsys, *extra, steps=STEPS, own_summaries=True):
    """One in-process run: (exit code, log text, stderr text).

    Each run gets its own --summaries_dir unless ``own_summaries`` is false: three runs within one second
    on one summaries_dir trip a bug of their own (test_runs_started_in_the_same_second_...).
    """
    caplog.clear()
    caplog.set_level("INFO", logger="retrain")
    if own_summaries:
        extra = (f"--summaries_dir={tmp_path / 'out' / f'logs-{next(_run_number)}'}", *extra)
    code = retrain_main(retrain_args(tmp_path, image_dir, module, *extra, steps=steps))
    return code, caplog.text, capsys.readouterr().err


def counts_line(log: str) -> tuple[int, int, int] | None:
    match = re.search(r"(\d+) bottlenecks cached, (\d+) imported, (\d+) to compute", log)
    return tuple(int(v) for v in match.groups()) if match else None


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative path -> bytes)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of an atomic write that were left behind."""
    return [p.name for p in folder.rglob("*") if p.name.endswith(".part") or re.match(r"^\.[^.].*\.\w{8}$", p.name)]


def db_file(out: Path) -> Path:
    return out / "bottlenecks" / "bottlenecks.sqlite3"


def rows(db: Path) -> dict[str, tuple]:
    with sqlite3.connect(db) as con:
        return {d: (m, v, dim, crc, data) for m, d, v, dim, crc, data in con.execute("SELECT * FROM vectors")}


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return con.execute("PRAGMA integrity_check").fetchone()[0]


def confusable(root: Path) -> Path:
    """Two classes holding the very same photos: no classifier can beat 50% on them."""
    for i in range(20):
        data = write_photo(root / "a" / f"p{i:02d}.jpg", (128, 128, 128), seed=300 + i).read_bytes()
        (root / "b" / f"p{i:02d}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (root / "b" / f"p{i:02d}.jpg").write_bytes(data)
    return root


# --------------------------------------------------------------------------- exit codes


def test_exit_codes_0_success_2_usage_1_other(tmp_path, tiny_module, caplog, capsys):
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    assert run(tmp_path, images, tiny_module, caplog, capsys)[0] == 0

    with pytest.raises(SystemExit) as exc:  # argparse's own usage errors exit 2 too
        retrain_main(["--image_dir", str(images), "--no_such_flag"])
    assert exc.value.code == 2
    capsys.readouterr()

    for bad in ("--how_many_training_steps=0", "--testing_percentage=100", "--learning_rate=-1"):
        code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, bad)
        assert code == 2, bad
        the_error(err)

    code, _log, err = run(tmp_path, confusable(tmp_path / "same"), tiny_module, caplog, capsys,
                          "--assert_accuracy_at_least=60")
    assert code == 1
    the_error(err)


# --------------------------------------------------------------------------- quality gate


def test_accuracy_gate_failure_exits_1_and_keeps_the_previous_outputs(tmp_path, tiny_module, caplog, capsys):
    out = tmp_path / "out"
    good = make_dataset(tmp_path / "good", {"red": 10, "green": 10, "blue": 10})
    code, log, err = run(tmp_path, good, tiny_module, caplog, capsys, "--assert_accuracy_at_least=80")
    assert code == 0, err
    before = {name: (out / name).read_bytes() for name in ("graph.pb", "labels.txt")}

    code, log, err = run(tmp_path, confusable(tmp_path / "same"), tiny_module, caplog, capsys,
                         "--assert_accuracy_at_least=90")

    assert code == 1
    line = the_error(err)
    assert "below --assert_accuracy_at_least 90%" in line
    assert {name: (out / name).read_bytes() for name in before} == before
    assert leftovers(out) == []

    # No test images at all cannot pass a gate either.
    code, log, err = run(tmp_path, good, tiny_module, caplog, capsys, "--assert_accuracy_at_least=10",
                         "--testing_percentage=0")
    assert code == 1
    assert "not measured" in the_error(err)
    assert {name: (out / name).read_bytes() for name in before} == before


# --------------------------------------------------------------------------- full disk, unwritable outputs


def _full_disk_for(monkeypatch, name: str):
    """Make writing the temporary file of output ``name`` fail as a full disk does."""
    real_write_bytes = Path.write_bytes

    def write_bytes(self, data):
        if self.name.startswith(f".{name}.") and self.name.endswith(".part"):
            real_write_bytes(self, data[: len(data) // 2])  # the disk filled up half way
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_full_disk_while_writing_the_graph(tmp_path, tiny_module, caplog, capsys, monkeypatch):
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    _full_disk_for(monkeypatch, "graph.pb")

    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys)

    assert code == 1
    line = the_error(err)
    assert "No space left on device" in line and str(tmp_path / "out" / "graph.pb") in line
    out = tmp_path / "out"
    assert not (out / "graph.pb").exists() and not (out / "labels.txt").exists()
    assert leftovers(out) == []
    assert integrity(db_file(out)) == "ok" and len(rows(db_file(out))) == 12  # the cache is kept for next time


@pytest.mark.parametrize("where", ["output_graph", "output_labels"])
def test_an_output_path_under_a_file_is_a_clear_error(tmp_path, tiny_module, caplog, capsys, where):
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    blocker = tmp_path / "out" / "plain file"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where a folder is needed")
    target = blocker / "sub" / "file"

    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, f"--{where}={target}")

    assert code == 2  # found before any work, like every other unusable flag
    line = the_error(err)
    assert str(target) in line and "not a folder" in line
    assert leftovers(tmp_path / "out") == []
    assert blocker.read_text() == "a file where a folder is needed"


@pytest.mark.parametrize("failure", ["full disk", "unwritable"])
def test_a_failure_while_writing_labels_keeps_the_previous_graph_and_labels(
    tmp_path, tiny_module, caplog, capsys, monkeypatch, failure
):
    out = tmp_path / "out"
    code, _log, err = run(tmp_path, make_dataset(tmp_path / "two", {"red": 6, "green": 6}), tiny_module, caplog, capsys)
    assert code == 0, err
    before = snapshot(out)
    three = make_dataset(tmp_path / "three", {"red": 6, "green": 6, "blue": 6})
    extra = []
    if failure == "full disk":
        _full_disk_for(monkeypatch, "labels.txt")
    else:
        extra = ["--output_labels=/proc/no/such/labels.txt"]  # /proc takes no new folders, even from root

    code, _log, err = run(tmp_path, three, tiny_module, caplog, capsys, *extra)

    assert code == (1 if failure == "full disk" else 2)  # an unwritable path is refused before any work
    the_error(err)
    after = snapshot(out)
    assert after["graph.pb"] == before["graph.pb"] and after["labels.txt"] == before["labels.txt"]
    assert leftovers(out) == []


# --------------------------------------------------------------------------- folders the user names


def test_named_folders_are_never_deleted_and_old_summaries_are_moved_aside(tmp_path, tiny_module, caplog, capsys):
    out = tmp_path / "out"
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    mine = {
        out / "logs" / "my notes.txt": "summaries_dir",
        out / "logs" / "old experiment" / "events.out.tfevents.1.host": "a folder of mine in summaries_dir",
        out / "bottlenecks" / "README": "bottleneck_dir",
        out / "intermediate" / "keep.pb": "intermediate_output_graphs_dir",
        out / "checkpoint" / "keep": "checkpoint's folder",
        out / "neighbour.txt": "output_graph's folder",
    }
    for path, text in mine.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    extra = ("--intermediate_store_frequency=10",)

    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, *extra, own_summaries=False)
    assert code == 0, err
    first_events = {p.relative_to(out / "logs").as_posix() for p in (out / "logs").glob("*/events.out.tfevents.*")}
    assert {name.split("/")[0] for name in first_events} >= {"train", "validation"}
    assert len(list((out / "intermediate").glob("intermediate_*.pb"))) >= 2

    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, *extra, own_summaries=False)
    assert code == 0, err

    for path, text in mine.items():
        assert path.read_text() == text, f"the {text} lost {path.name}"
    (moved,) = (out / "logs" / "previous_runs").iterdir()  # previous_runs/<time>/
    for name in first_events - {n for n in first_events if n.startswith("old experiment/")}:
        assert (moved / name).is_file(), name  # the first run's events, moved aside whole
    fresh = {p.parent.name for p in (out / "logs").glob("*/events.out.tfevents.*")}
    assert {"train", "validation"} <= fresh  # and the second run's own


def test_runs_started_in_the_same_second_each_keep_their_summaries(tmp_path, monkeypatch):
    import bottleneck.training.tensorboard as tensorboard

    monkeypatch.setattr(tensorboard.time, "strftime", lambda *_a: "20240101-000001")
    root = tmp_path / "logs"
    for run_number in range(3):  # what three runs in one second do to --summaries_dir
        tensorboard._move_old_runs_aside(root)
        for name in ("train", "validation"):
            (root / name).mkdir(parents=True)
            (root / name / f"events.out.tfevents.{run_number}").write_text(f"run {run_number}")
    kept = sorted(p.read_text() for p in root.glob("**/train/events.out.tfevents.*"))
    assert kept == ["run 0", "run 1", "run 2"]  # every run's events are still there


def test_a_summaries_dir_that_cannot_be_created_is_one_sentence(tmp_path, tiny_module, caplog, capsys):
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    (tmp_path / "a file").write_text("x")

    summaries = f"--summaries_dir={tmp_path / 'a file' / 'logs'}"
    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, summaries)

    assert code in (1, 2)
    assert "summaries_dir" in the_error(err)


def test_saved_model_is_replaced_whole_kept_on_failure_and_never_eats_a_user_folder(
    tmp_path, tiny_module, caplog, capsys
):
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    saved = tmp_path / "out" / "saved"
    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, f"--saved_model_dir={saved}")
    assert code == 0, err
    assert (saved / "saved_model.pb").is_file()
    before = snapshot(saved)

    code, _log, err = run(tmp_path, confusable(tmp_path / "same"), tiny_module, caplog, capsys,
                          f"--saved_model_dir={saved}", "--assert_accuracy_at_least=90")
    assert code == 1
    assert snapshot(saved) == before

    mine = tmp_path / "my documents"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, f"--saved_model_dir={mine}")
    assert (mine / "thesis.txt").read_text() == "years of work"
    if code != 0:
        assert code == 2 and str(mine) in the_error(err)


# --------------------------------------------------------------------------- real processes


class _Run:
    """retrain.py in a real process; its output goes to files, so that a full pipe can never stall it."""

    def __init__(self, args, logs: Path):
        logs.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = logs / "stdout.txt", logs / "stderr.txt"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "retrain.py", *args], cwd=ROOT, stdout=out, stderr=err)

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")


def _count(con: sqlite3.Connection, table: str) -> int:
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or busy for a moment
        return -1


def _kill_when(run_: _Run, db: Path, table: str, at_least: int, deadline_s: float = 240) -> None:
    """SIGKILL the run as soon as ``table`` of the cache holds ``at_least`` rows."""
    proc = run_.proc
    con = None
    end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end:
            assert proc.poll() is None, f"the run ended before it could be killed:\n{run_.err[-3000:]}"
            if con is None and db.exists():
                con = sqlite3.connect(db, timeout=5)
            if con is not None and _count(con, table) >= at_least:
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                return
            time.sleep(0.003)
        pytest.fail(f"{table} never reached {at_least} rows")
    finally:
        if con is not None:
            con.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigkill_at_several_points_then_a_rerun_reuses_every_finished_entry(tmp_path, tiny_module, caplog):
    n = 240
    images = tmp_path / "images"
    for i in range(n):
        name, colour = ("red", (220, 40, 40)) if i % 2 else ("green", (40, 200, 60))
        write_photo(images / name / f"p{i:03d}.jpg", colour, seed=i, size=(160, 120))
    args = retrain_args(tmp_path, images, tiny_module, "--extraction_batch_size=1", steps=20)
    db = db_file(tmp_path / "out")

    stored: dict[str, tuple] = {}
    # Killed: once the file digests are in (before or just as extraction starts), then twice mid-extraction.
    for k, (table, at_least) in enumerate((("files", n), ("vectors", n * 3 // 10), ("vectors", n * 7 // 10))):
        killed = _Run(args, tmp_path / f"run{k}")
        _kill_when(killed, db, table, at_least)
        assert killed.proc.returncode == -signal.SIGKILL
        err = killed.err
        reported = counts_line(err)
        if stored or reported:  # the first run may die before it says what it will compute
            assert reported == (len(stored), 0, n - len(stored)), err[-2000:]
        assert integrity(db) == "ok"
        now = rows(db)
        assert {d: now[d] for d in stored} == stored  # finished entries are never touched again
        assert len(now) >= len(stored)
        print(f"killed when {table} held >= {at_least} rows: {len(now)} vectors stored, reported {reported}")
        stored = now
    assert 0 < len(stored) < n

    caplog.set_level("INFO", logger="retrain")
    assert retrain_main(args) == 0
    assert counts_line(caplog.text) == (len(stored), 0, n - len(stored))  # nothing computed twice
    final = rows(db)
    assert len(final) == n and {d: final[d] for d in stored} == stored
    assert integrity(db) == "ok"
    assert (tmp_path / "out" / "graph.pb").is_file()


def test_two_runs_at_once_on_one_bottleneck_dir_both_finish(tmp_path, tiny_module):
    """Cron overlapping itself: a second run starts while the first is half way through the bottlenecks."""
    n = 240
    images = tmp_path / "images"
    for i in range(n):
        name, colour = (("red", (220, 40, 40)), ("green", (40, 200, 60)), ("blue", (40, 60, 220)))[i % 3]
        write_photo(images / name / f"p{i:03d}.jpg", colour, seed=1000 + i, size=(160, 120))
    shared = tmp_path / "shared bottlenecks"
    db = shared / "bottlenecks.sqlite3"

    def start(name):
        return _Run(retrain_args(tmp_path / name, images, tiny_module, f"--bottleneck_dir={shared}",
                                 "--extraction_batch_size=1", steps=20), tmp_path / name)

    first = start("first")
    second = None
    try:
        # Freeze the first run part way through its bottlenecks, start the second, let it see the half-filled
        # cache, then let both go on side by side.
        con = None
        deadline = time.monotonic() + 240
        while con is None or _count(con, "vectors") < n // 8:
            assert first.proc.poll() is None, first.err[-3000:]
            assert time.monotonic() < deadline, "the first run never started computing"
            if con is None and db.exists():
                con = sqlite3.connect(db, timeout=5)
            time.sleep(0.003)
        con.close()
        first.proc.send_signal(signal.SIGSTOP)
        second = start("second")
        deadline = time.monotonic() + 20  # (if frozen inside a write, the second run waits for it instead)
        while counts_line(second.err) is None and second.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        first.proc.send_signal(signal.SIGCONT)
        for r in (first, second):
            r.proc.wait(300)
    finally:
        for r in (first, second):
            if r is not None and r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait()

    for r in (first, second):
        assert r.proc.returncode == 0, r.err[-3000:]
        assert "Traceback" not in r.err and "error:" not in r.err
    computed = [counts_line(r.err) for r in (first, second)]
    print("cached, imported, to compute, per run:", computed)
    assert computed[0] == (0, 0, n)
    assert 0 < computed[1][0] < n  # the second run found the cache half filled, and used what was there
    db_rows = rows(db)
    assert integrity(db) == "ok"
    assert len(db_rows) == n  # one row per distinct image
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM files").fetchone()[0] == n
    labels = [(tmp_path / name / "out" / "labels.txt").read_text() for name in ("first", "second")]
    assert labels[0] == labels[1] == "blue\ngreen\nred\n"
    for name in ("first", "second"):
        assert (tmp_path / name / "out" / "graph.pb").stat().st_size > 0
