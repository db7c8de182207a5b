"""Decoding on worker threads or worker processes (data/decoding.py): the same pixels and batches either way,
a decoder that crashes costs only its image, and nothing is left behind when a run is stopped."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, make_dataset, retrain_args, run_retrain, write_photo

from bottleneck.data.decoding import (
    AUTO,
    CHANGED_WHILE_READ,
    CRASHED,
    PROCESSES,
    THREADS,
    DecodingPool,
    FileDecoder,
    FileTask,
    Workers,
    choose_workers,
    processes_available,
)
from bottleneck.data.digest import file_digest
from bottleneck.data.distort import Distortion
from bottleneck.data.images import load_for_model

needs_processes = pytest.mark.skipif(not processes_available(), reason="no anonymous shared memory here")
SIZE = 32


@dataclass(frozen=True)
class CrashOn:
    """A decoder that ends its process on the file named ``name``, as a decoder crashing in native code does."""

    name: str
    inner: FileDecoder

    def __call__(self, task: FileTask):
        if os.path.basename(task.path) == self.name:
            os._exit(70)
        return self.inner(task)


@dataclass(frozen=True)
class Slow:
    """A decoder that takes its time, so that a run can be stopped halfway."""

    inner: FileDecoder
    seconds: float = 0.5

    def __call__(self, task: FileTask):
        time.sleep(self.seconds)
        return self.inner(task)


@dataclass(frozen=True)
class Broken:
    """A decoder with a bug (not a bad file): it must not pass for an unreadable image."""

    def __call__(self, task: FileTask):
        raise ZeroDivisionError("a bug")


def photo_folder(folder: Path, count: int = 23) -> list[Path]:
    """Small photos of several formats and sizes, with a missing file and a file that is not an image among them."""
    paths = []
    for i in range(count):
        fmt, suffix = (("PNG", "png") if i % 5 == 0 else ("JPEG", "jpg"))
        paths.append(write_photo(folder / f"photo_{i:02d}.{suffix}", (30 + 9 * i, 200 - 7 * i, 90), seed=i,
                                 size=(40 + 3 * i, 30 + 2 * i), fmt=fmt))
    (folder / "notes.jpg").write_text("not a photo\n")
    paths.insert(5, folder / "notes.jpg")
    paths.insert(11, folder / "vanished.jpg")
    return paths


def decode_all(decoder, tasks, workers: Workers, batch_size: int = 4):
    """Every batch of a pass, copied: [(pixels, decoded positions, failed (position, reason))]."""
    with DecodingPool(decoder, SIZE, SIZE, batch_size, workers) as pool:
        assert pool.workers.kind == workers.kind
        return [(batch.pixels.copy(), batch.decoded, batch.failed) for batch in pool.batches(tasks)]


@needs_processes
def test_threads_and_processes_decode_exactly_what_load_for_model_decodes(tmp_path):
    paths = photo_folder(tmp_path)
    tasks = [FileTask(str(p)) for p in paths]
    on_threads = decode_all(FileDecoder(SIZE, SIZE), tasks, Workers(THREADS, 3, "test"))
    on_processes = decode_all(FileDecoder(SIZE, SIZE), tasks, Workers(PROCESSES, 2, "test"))
    assert [(d, f) for _p, d, f in on_threads] == [(d, f) for _p, d, f in on_processes]
    for (a, _d, _f), (b, _d2, _f2) in zip(on_threads, on_processes):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
    # Batches follow the tasks' order, each short by its failures; every task is in exactly one batch.
    decoded = [position for _p, d, _f in on_threads for position in d]
    failed = dict(f for _p, _d, fs in on_threads for f in fs)
    assert decoded == [i for i in range(len(paths)) if i not in (5, 11)]
    assert failed == {5: "not an image (looks like text)", 11: "cannot read file (No such file or directory)"}
    assert [len(d) + len(f) for _p, d, f in on_threads] == [4] * 6 + [1]
    pixels = {position: row for batch, d, _f in on_processes for position, row in zip(d, batch)}
    for position in decoded:
        assert np.array_equal(pixels[position], load_for_model(paths[position], SIZE, SIZE))


@needs_processes
def test_digests_and_distorted_copies_are_the_same_on_processes(tmp_path):
    paths = photo_folder(tmp_path, count=9)[:9]
    paths = [p for p in paths if p.is_file() and p.suffix == ".jpg" and p.name != "notes.jpg"]
    distortion = Distortion(flip_left_right=True, random_crop=10, random_scale=10, random_brightness=10)
    tasks = [FileTask(str(p), file_digest(p), copy) for p in paths for copy in (None, 0, 1)]
    changed = paths[0]
    tasks.append(FileTask(str(changed), "0" * 64))  # a file whose content is no longer the one hashed
    decoder = FileDecoder(SIZE, SIZE, distortion)
    on_threads = decode_all(decoder, tasks, Workers(THREADS, 2, "test"))
    on_processes = decode_all(decoder, tasks, Workers(PROCESSES, 2, "test"))
    assert [(d, f) for _p, d, f in on_threads] == [(d, f) for _p, d, f in on_processes]
    assert all(np.array_equal(a, b) for (a, _d, _f), (b, _d2, _f2) in zip(on_threads, on_processes))
    assert on_threads[-1][2] == [(len(tasks) - 1, CHANGED_WHILE_READ)]


@needs_processes
def test_a_decoder_that_crashes_costs_its_image_only(tmp_path):
    paths = [p for p in photo_folder(tmp_path) if p.is_file() and p.name != "notes.jpg"]
    tasks = [FileTask(str(p)) for p in paths]
    crashing = CrashOn(paths[7].name, FileDecoder(SIZE, SIZE))
    batches = decode_all(crashing, tasks, Workers(PROCESSES, 2, "test"))
    failed = [f for _p, _d, fs in batches for f in fs]
    assert failed == [(7, f"{CRASHED} (exit code 70)")]
    pixels = {position: row for batch, d, _f in batches for position, row in zip(d, batch)}
    assert sorted(pixels) == [i for i in range(len(paths)) if i != 7]
    for position, row in pixels.items():  # the images queued behind the crash were decoded by the others
        assert np.array_equal(row, load_for_model(paths[position], SIZE, SIZE))


@needs_processes
def test_every_worker_crashing_on_its_image_still_ends_the_run(tmp_path):
    paths = [p for p in photo_folder(tmp_path, count=6) if p.is_file() and p.name != "notes.jpg"]
    tasks = [FileTask(str(p)) for p in paths] + [FileTask(str(paths[2]))] * 3
    batches = decode_all(CrashOn(paths[2].name, FileDecoder(SIZE, SIZE)), tasks, Workers(PROCESSES, 2, "test"), 3)
    failed = dict(f for _p, _d, fs in batches for f in fs)
    assert set(failed) == {2, len(paths), len(paths) + 1, len(paths) + 2}
    assert sum(len(d) for _p, d, _f in batches) == len(paths) - 1


@needs_processes
def test_where_worker_processes_cannot_start_the_pool_decodes_on_threads(tmp_path, monkeypatch):
    import types

    only_here = types.ModuleType("decoder_only_in_this_process")  # a worker cannot import it, so it never starts
    exec("class Decoder:\n    def __init__(self, inner): self.inner = inner\n"
         "    def __call__(self, task): return self.inner(task)\n", only_here.__dict__)
    monkeypatch.setitem(sys.modules, only_here.__name__, only_here)
    paths = [p for p in photo_folder(tmp_path, count=8) if p.is_file() and p.name != "notes.jpg"]
    with DecodingPool(only_here.Decoder(FileDecoder(SIZE, SIZE)), SIZE, SIZE, 3, Workers(PROCESSES, 2, "test")) as pool:
        pixels = {position: row.copy() for batch in pool.batches([FileTask(str(p)) for p in paths])
                  for position, row in zip(batch.decoded, batch.pixels)}
        assert pool.workers.kind == THREADS and pool.workers.why.startswith("processes cannot start here")
    assert sorted(pixels) == list(range(len(paths)))
    assert all(np.array_equal(pixels[i], load_for_model(path, SIZE, SIZE)) for i, path in enumerate(paths))


@pytest.mark.parametrize("kind", [THREADS, pytest.param(PROCESSES, marks=needs_processes)])
def test_a_bug_in_the_decoder_stops_the_pass_instead_of_skipping_every_image(tmp_path, kind):
    paths = [p for p in photo_folder(tmp_path, count=3) if p.is_file()]
    with pytest.raises((ZeroDivisionError, RuntimeError), match="a bug"):
        decode_all(Broken(), [FileTask(str(p)) for p in paths], Workers(kind, 2, "test"))


def test_the_automatic_choice_takes_processes_only_where_they_pay():
    assert choose_workers(AUTO, images=100_000, cores=2) == Workers(THREADS, 2, "2 cores: too few for processes to pay")
    assert choose_workers(AUTO, images=100_000, cores=3).kind == THREADS
    assert choose_workers(AUTO, images=10, cores=16).kind == THREADS
    many = choose_workers(AUTO, images=100_000, cores=16)
    assert (many.kind, many.count) == ((PROCESSES, 16) if processes_available() else (THREADS, 16))
    assert choose_workers(THREADS, images=100_000, cores=16).kind == THREADS
    assert choose_workers(PROCESSES, images=100_000, cores=1).count == 1
    assert choose_workers(THREADS, images=3, cores=8).count == 3  # no more workers than images
    with pytest.raises(ValueError):
        choose_workers("fork")


def test_the_setting_offers_exactly_the_pools_choices():
    import dataclasses

    from bottleneck.config.settings import BottleneckSettings
    from bottleneck.data.decoding import WORKER_KINDS

    field = {f.name: f for f in dataclasses.fields(BottleneckSettings)}["decode_workers"]
    assert field.default == AUTO and tuple(field.metadata["argparse"]["choices"]) == WORKER_KINDS


# A child process that computes bottlenecks through the pool and is stopped halfway.  {stop_in} says where the
# parent's SIGTERM finds it: in the network (a slow network) or waiting for decoded images (a slow decoder).
CHILD = """
import signal, sys, time, types
from pathlib import Path
import numpy as np
from bottleneck.cache.store import BottleneckCache, Entry
from bottleneck.data.decoding import FileDecoder
from bottleneck.data.digest import file_digest
from bottleneck.errors import Terminated
from bottleneck.extraction import batches
from test_decoding import Slow

def terminate(signum, frame):
    raise Terminated()

signal.signal(signal.SIGTERM, terminate)
folder, stop_in = Path(sys.argv[1]), sys.argv[2]
paths = sorted((folder / "images").rglob("*.jpg"))
jobs = [batches.Job(Entry(file_digest(p)), p) for p in paths]
cache = BottleneckCache(folder / "cache", "test-module", 4, log=lambda line: None)
if stop_in == "decoding":
    batches.FileDecoder = lambda h, w, d: Slow(FileDecoder(h, w, d), 0.5)

def network(images):
    print("batch", flush=True)
    if stop_in == "network":
        time.sleep(60)
    return np.ones((len(images), 4), np.float32)

try:
    batches.compute_missing(types.SimpleNamespace(height=32, width=32), jobs, cache, 4, features=network,
                            workers="processes")
    print("finished", flush=True)
except Terminated:
    sys.exit(143)
finally:
    cache.close()
"""


def children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@needs_processes
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="looks for the workers in /proc")
@pytest.mark.parametrize("stop_in", ["network", "decoding"])
def test_sigterm_during_creation_leaves_no_worker_and_no_file(tmp_path, stop_in):
    make_dataset(tmp_path / "images", per_class=8)
    shm_before = set(os.listdir("/dev/shm")) if Path("/dev/shm").is_dir() else set()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), stop_in], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        if stop_in == "network":
            assert child.stdout.readline().strip() == "batch"
        else:
            deadline = time.monotonic() + 30
            while len(children_of(child.pid)) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)  # the workers are decoding their first images
        workers = children_of(child.pid)
        assert len(workers) >= 2, "the pool's worker processes are the child's children"
        child.send_signal(signal.SIGTERM)
        _out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 143, err
    assert "Traceback" not in err, err
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)], "a worker process outlived its parent"
    if Path("/dev/shm").is_dir():
        left = {name for name in set(os.listdir("/dev/shm")) - shm_before if "bottleneck" in name or "psm_" in name}
        assert not left, left
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
                   and not p.relative_to(tmp_path).as_posix().startswith("images/"))
    assert files == ["cache/bottlenecks.sqlite3"], files


def cached_vectors(folder: Path) -> dict:
    with sqlite3.connect(folder / "out" / "bottlenecks" / "bottlenecks.sqlite3") as db:
        return {(module, digest, variant): data for module, digest, variant, data
                in db.execute("SELECT module, digest, variant, data FROM vectors")}


@needs_processes
def test_retrain_computes_the_same_bottlenecks_on_processes_as_on_threads(tmp_path, tiny_module, caplog, capsys):
    images = make_dataset(tmp_path / "images", per_class=10)
    (images / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    distortions = ("--flip_left_right", "--random_crop=10", "--distorted_copies=2")
    vectors = {}
    for kind in (THREADS, PROCESSES):
        code, log, _err = run_retrain(tmp_path / kind, images, tiny_module, caplog, capsys,
                                      f"--decode_workers={kind}", *distortions)
        assert code == 0, log
        assert "broken.jpg" in log
        assert ("Decoding on 2 worker processes (as asked)." in log) == (kind == PROCESSES)
        vectors[kind] = cached_vectors(tmp_path / kind)
    plain = [key for key in vectors[THREADS] if key[2] == ""]
    assert len(plain) == 30 and len(vectors[THREADS]) > len(plain)  # the distorted copies of training images too
    assert vectors[THREADS] == vectors[PROCESSES]

    # label_image.py over the folder: the same scores, the same error, the same order.
    from bottleneck.cli.label_image import label_image_main

    out = tmp_path / THREADS / "out"
    printed = {}
    for kind in (THREADS, PROCESSES):
        capsys.readouterr()
        code = label_image_main([f"--graph={out / 'graph.pb'}", f"--labels={out / 'labels.txt'}", "--batch_size=7",
                                 "--output_format=json", "--input_mean=10", "--input_std=200",
                                 f"--decode_workers={kind}", str(images)])
        printed[kind] = capsys.readouterr()
        assert code == 2 and "broken.jpg" in printed[kind].err
    assert printed[THREADS] == printed[PROCESSES]
    assert len(printed[THREADS].out.splitlines()) == 31


@needs_processes
def test_the_local_beam_pipelines_decode_on_processes_as_they_do_on_threads(tmp_path, tiny_module, capsys,
                                                                             monkeypatch):
    from test_beam import imported_vectors, parse_json

    from bottleneck.cli.label_image import label_image_main
    from bottleneck.cli.retrain import retrain_main
    from bottleneck.model.modules import load_module
    from bottleneck.scale_out import beam_bottlenecks, beam_decoding

    pools = []  # the pools the pipelines make (in this process: the local runner runs here)

    def counted_pool(*args):
        pools.append(args[-1])
        return DecodingPool(*args)

    monkeypatch.setattr(beam_decoding, "DecodingPool", counted_pool)

    images = make_dataset(tmp_path / "images", {"red": 5, "green": 5, "blue": 5})
    (images / "green" / "broken.jpg").write_bytes(b"not a picture")
    module = load_module(str(tiny_module), None)
    vectors, skipped = {}, {}
    for kind in (THREADS, PROCESSES):
        out = tmp_path / f"shards-{kind}"
        outcome = beam_bottlenecks.create_bottlenecks(images, out, module, batch_size=4, log=lambda line: None,
                                                      beam_args=["--direct_num_workers=2"], decode_workers=kind)
        assert (outcome.computed, outcome.skipped) == (15, 1)
        vectors[kind] = imported_vectors(module, out, tmp_path / f"imported-{kind}")
        skipped[kind] = beam_bottlenecks.read_skipped(out)
    broken = images / "green" / "broken.jpg"
    assert skipped[THREADS] == skipped[PROCESSES] == [{"path": str(broken), "reason": "not an image (looks like text)",
                                                       "undecodable_digest": file_digest(broken)}]
    assert vectors[THREADS].keys() == vectors[PROCESSES].keys() and len(vectors[THREADS]) == 15
    assert max(float(np.abs(vectors[THREADS][d] - vectors[PROCESSES][d]).max()) for d in vectors[THREADS]) <= 1e-5
    assert [workers.kind for workers in pools] == [PROCESSES]  # the threads' run decoded per element

    assert retrain_main(retrain_args(tmp_path, images, tiny_module, steps=50)) == 0
    flags = [f"--graph={tmp_path / 'out' / 'graph.pb'}", f"--labels={tmp_path / 'out' / 'labels.txt'}",
             "--precision=float32", "--output_format=json", "--input_std=128"]
    capsys.readouterr()
    assert label_image_main([*flags, "--decode_workers=threads", str(images)]) == 2
    local = capsys.readouterr().out.splitlines()
    shards = tmp_path / "rows"
    assert label_image_main([*flags, "--decode_workers=processes", f"--beam_output={shards}",
                             "--direct_num_workers=2", str(images)]) == 2
    lines = [line for f in sorted(shards.glob("predictions-*.jsonl")) for line in f.read_text().splitlines()]
    rows = parse_json(lines)
    assert len(rows) == 16 and [workers.kind for workers in pools] == [PROCESSES, PROCESSES]
    local_rows = parse_json(local)
    assert local_rows.keys() == rows.keys()
    for path, (texts, scores) in local_rows.items():
        assert texts == rows[path][0] and np.allclose(scores, rows[path][1], atol=2e-6)
