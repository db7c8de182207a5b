"""How fast do photos decode on this machine's cores: threads, processes, and the tool's own decoding pool.

    .venv/bin/python -m bench.decoding [--workers 1,2,4,8,16] [--image_dir examples/flower_photos] \
        [--quick] [--rounds 1] [--json bench/results/decoding-<machine>.json]

Decoding alone, no network: each photo becomes the model's input
(``images.load_for_model``: decoded, resized to 299x299, float32), on small
photos (``--image_dir``, by default the sample in ``examples/``, about
320x240) and on 12-megapixel photos that ``tools/make_large_photos.py`` makes
from a few of them in a temporary folder.  For each worker count, four ways:

* ``thread_pool``: ``ThreadPoolExecutor.map`` over ``load_for_model``;
* ``process_pool``: ``ProcessPoolExecutor.map`` over ``load_for_model`` (the
  default start method, ``--chunksize`` tasks per message), the pixels pickled
  back: the yardstick of a plain process pool;
* ``tool_threads`` and ``tool_processes``: ``data.decoding.DecodingPool``
  exactly as bottleneck creation runs it (each file read, its SHA-256 checked,
  decoded into a ring of batch buffers of ``--batch_size``; the processes'
  ring in shared memory).

Each figure is images per second over a pass of the same files (repeated to
last about a second or more), after the workers have started and warmed up;
the tool's start-up (its workers ready) is given apart.  The ratio
``tool_processes / process_pool`` is the one the tool is held to (at least
0.9).  Needs only NumPy and Pillow: neither TensorFlow nor an installed
package (run it from the repository root); the result says that TensorFlow
was never imported.
"""
from __future__ import annotations

import argparse
import functools
import multiprocessing
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL

from bench.machine import command, machine, write_result
from bottleneck.data.decoding import (
    AUTO,
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
from bottleneck.data.images import HEIF_SUPPORTED, is_candidate, load_for_model
from tools.make_large_photos import write_large_photos

REPO = Path(__file__).resolve().parent.parent
SIZE = 299
METHODS = ("thread_pool", "process_pool", "tool_threads", "tool_processes")


def photos_in(folder) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_candidate(p.name)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def repeated(paths: list, count: int) -> list:
    """``count`` items going round ``paths``."""
    return [paths[i % len(paths)] for i in range(count)]


def plain_pool_rate(executor, paths: list[Path], workers: int, chunksize: int) -> tuple[float, float]:
    """(images/s, start-up s) of ``executor`` mapping load_for_model over ``paths``."""
    decode = functools.partial(load_for_model, height=SIZE, width=SIZE)
    started = time.perf_counter()
    with executor(max_workers=workers) as pool:
        for _pixels in pool.map(decode, paths[: 2 * workers]):  # starts and warms every worker
            pass
        ready = time.perf_counter()
        kwargs = {"chunksize": chunksize} if executor is ProcessPoolExecutor else {}
        timed = time.perf_counter()
        for _pixels in pool.map(decode, paths, **kwargs):
            pass
        rate = len(paths) / (time.perf_counter() - timed)
    return rate, ready - started


def tool_rate(kind: str, tasks: list[FileTask], workers: int, batch_size: int) -> tuple[float, float]:
    """(images/s, start-up s) of the tool's DecodingPool on ``kind`` workers, as bottleneck creation runs it."""
    started = time.perf_counter()
    with DecodingPool(FileDecoder(SIZE, SIZE), SIZE, SIZE, batch_size, Workers(kind, workers, "benchmark")) as pool:
        assert pool.workers.kind == kind, pool.workers
        for _batch in pool.batches(tasks[: 2 * workers]):  # every worker started and warm
            pass
        ready = time.perf_counter()
        decoded = 0
        timed = time.perf_counter()
        for batch in pool.batches(tasks):
            decoded += len(batch.decoded)
            assert not batch.failed, batch.failed
        rate = decoded / (time.perf_counter() - timed)
    return rate, ready - started


def measure(method: str, paths: list[Path], digests: dict, workers: int, args) -> tuple[float, float]:
    if method == "thread_pool":
        return plain_pool_rate(ThreadPoolExecutor, paths, workers, args.chunksize)
    if method == "process_pool":
        return plain_pool_rate(ProcessPoolExecutor, paths, workers, args.chunksize)
    tasks = [FileTask(str(p), digests[p]) for p in paths]
    return tool_rate(THREADS if method == "tool_threads" else PROCESSES, tasks, workers, args.batch_size)


def describe(paths: list[Path]) -> dict:
    sizes = []
    for path in paths:
        with PIL.Image.open(path) as image:
            sizes.append(image.size)
    return {"files": len(paths), "mean_megabytes": round(float(np.mean([p.stat().st_size for p in paths])) / 1e6, 3),
            "mean_megapixels": round(float(np.mean([w * h for w, h in sizes])) / 1e6, 3),
            "largest": list(max(sizes, key=lambda s: s[0] * s[1]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2,4,8,16", help="Worker counts to measure, comma-separated.")
    p.add_argument("--image_dir", type=Path, default=REPO / "examples" / "flower_photos",
                   help="The small photos (class folders or one folder); the large ones are made from them.")
    p.add_argument("--large_dir", type=Path, default=None,
                   help="Folder of large photos to use instead of making 12-megapixel ones.")
    p.add_argument("--large_photos", type=int, default=8, help="How many 12-megapixel photos to make.")
    p.add_argument("--small_tasks", type=int, default=600,
                   help="Small photos decoded per measurement, per two workers (the photos go round).")
    p.add_argument("--large_tasks", type=int, default=48, help="Large photos decoded per measurement, per two "
                   "workers.")
    p.add_argument("--batch_size", type=int, default=32, help="The tool's batch (bottleneck creation's default).")
    p.add_argument("--chunksize", type=int, default=1, help="Tasks per message of the plain process pool.")
    p.add_argument("--methods", default=",".join(METHODS), help=f"Which of {', '.join(METHODS)} to measure.")
    p.add_argument("--rounds", type=int, default=1, help="Measure each figure this many times; the best counts.")
    p.add_argument("--quick", action="store_true", help="A smoke test: 1 and 2 workers, a quarter of the tasks, "
                   "4 large photos.")
    p.add_argument("--json", "--out", dest="json", type=Path, default=None, help="Write the result to this file.")
    args = p.parse_args(argv)
    if args.quick:
        if "--workers" not in " ".join(sys.argv):
            args.workers = "1,2"
        args.small_tasks, args.large_tasks, args.large_photos = args.small_tasks // 4, args.large_tasks // 4, 4
    counts = [int(n) for n in args.workers.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = set(methods) - set(METHODS)
    if unknown:
        p.error(f"unknown methods: {', '.join(sorted(unknown))}")
    if PROCESSES in " ".join(methods) and not processes_available():
        print("note: this system has no anonymous shared memory; the tool decodes on threads here")

    record = machine(tensorflow=False)
    scratch = Path(tempfile.mkdtemp(prefix="bench-decoding-"))
    try:
        small = photos_in(args.image_dir)
        if args.large_dir is not None:
            large = photos_in(args.large_dir)
        else:
            made = time.perf_counter()
            large = write_large_photos(args.image_dir, scratch / "large", args.large_photos)
            print(f"{len(large)} 12-megapixel photos made in {time.perf_counter() - made:.1f} s "
                  f"({sum(f.stat().st_size for f in large) / 1e6:.1f} MB)")
        data = {"small": (small, args.small_tasks), "large": (large, args.large_tasks)}
        digests = {path: file_digest(path) for path in small + large}
        rows = []
        for name, (photos, per_two) in data.items():
            for workers in counts:
                paths = repeated(photos, per_two * max(1, workers // 2))
                for method in methods:
                    best = None
                    for _round in range(args.rounds):
                        rate, start = measure(method, paths, digests, workers, args)
                        best = (rate, start) if best is None or rate > best[0] else best
                    rows.append({"data": name, "workers": workers, "method": method, "images": len(paths),
                                 "images_per_s": round(best[0], 1), "start_s": round(best[1], 3)})
                    print(f"{name:5} {workers:3} workers  {method:15} {best[0]:8.1f} images/s  "
                          f"(start {best[1]:.2f} s, {len(paths)} images)", flush=True)
        rate_of = {(r["data"], r["workers"], r["method"]): r["images_per_s"] for r in rows}
        ratios = []
        for name in data:
            for workers in counts:
                ratio = {"data": name, "workers": workers}
                for tool, plain in (("tool_processes", "process_pool"), ("tool_threads", "thread_pool")):
                    if (name, workers, tool) in rate_of and (name, workers, plain) in rate_of:
                        ratio[f"{tool}/{plain}"] = round(rate_of[name, workers, tool] / rate_of[name, workers, plain],
                                                         3)
                ratios.append(ratio)
        print("ratios:")
        for ratio in ratios:
            print("  " + ", ".join(f"{k}={v}" for k, v in ratio.items()))
        auto = choose_workers(AUTO, images=len(small) * 10)
        assert "tensorflow" not in sys.modules, "the decoding benchmark must not load TensorFlow"
        result = {
            "command": command(argv), "machine": record, "tensorflow_imported": False,
            "python": platform.python_version(), "numpy": np.__version__, "pillow": PIL.__version__,
            "heif": HEIF_SUPPORTED, "process_pool_start_method": multiprocessing.get_start_method(),
            "size": SIZE, "batch_size": args.batch_size, "chunksize": args.chunksize, "rounds": args.rounds,
            "small": {"image_dir": str(args.image_dir), **describe(small)},
            "large": {"made_from": None if args.large_dir else str(args.image_dir), **describe(large)},
            "auto_choice": {"kind": auto.kind, "workers": auto.count, "why": auto.why},
            "rows": rows, "ratios": ratios,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json is not None:
        write_result(args.json, result)
        print(f"written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
