"""Peak memory of training on one million cached 2,048-value bottlenecks (synthetic).

    .venv/bin/python -m bench.train_million [--vectors 1000000] [--work_dir DIR] [--json bench/results/x.json]

Builds (once, reused when present) a bottleneck cache of synthetic vectors in
five separable classes, then measures, in a fresh child process, what
retrain.py does after its bottlenecks are cached: load_sets (every set read in
one pass over the cache) and train_layer with the default settings (4,000 steps
of 100), then the test predictions.  The child's peak resident memory (VmHWM)
is the figure.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DIM = 2048
CLASSES = 5
MODULE = "synthetic-bench-module"
CHUNK = 5000
REPO = Path(__file__).resolve().parent.parent


def digest(i: int) -> str:
    return f"{i:064x}"


def build_cache(directory: Path, vectors: int) -> float:
    import numpy as np

    from bottleneck.cache.store import BottleneckCache, Entry

    cache = BottleneckCache(directory, MODULE, DIM)
    if len(cache.stored_digests()) == vectors:
        cache.close()
        return 0.0
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, size=(CLASSES, DIM)).astype(np.float32)
    for start in range(0, vectors, CHUNK):
        ids = np.arange(start, min(vectors, start + CHUNK))
        x = centres[ids % CLASSES] + rng.normal(0, 2, size=(len(ids), DIM)).astype(np.float32)
        cache.put([(Entry(digest(int(i))), np.abs(x[k])) for k, i in enumerate(ids)])
    cache.close()
    return time.perf_counter() - started


def child(directory: str, vectors: int, in_memory: bool) -> None:
    """Runs in a fresh process: load the sets, train, predict; prints the figures as JSON.

    ``in_memory``: hold every set in memory, as retrain.py did before it streamed big sets from disk.
    """
    import numpy as np

    from bottleneck.cache import sets
    from bottleneck.cache.sets import load_sets
    from bottleneck.cache.store import BottleneckCache
    from bottleneck.data.split import ClassSplit
    from bottleneck.data.walk import ImageFile
    from bottleneck.training.layer import TrainSettings, train_layer
    from bottleneck.training.numerics import layer_probabilities

    if in_memory:
        sets.IN_MEMORY_BYTES = float("inf")
    started = time.perf_counter()
    splits = [ClassSplit(label=f"class {c}") for c in range(CLASSES)]
    digest_of = {}
    for i in range(vectors):
        path = Path(f"/synthetic/class{i % CLASSES}/{i:07d}.jpg")
        digest_of[path] = digest(i)
        split = splits[i % CLASSES]
        place = (i // CLASSES) % 10
        (split.testing if place == 0 else split.validation if place == 1 else split.training).append(
            ImageFile(path, path.name))
    cache = BottleneckCache(directory, MODULE, DIM)
    data = load_sets(cache, splits, digest_of, DIM)
    cache.close()
    loaded = time.perf_counter()
    layer = train_layer(data["training"], data["validation"], CLASSES, TrainSettings(seed=1))
    trained = time.perf_counter()
    test = data["testing"]
    accuracy = float((layer_probabilities(layer, test.x).argmax(axis=1) == test.y).mean())
    done = time.perf_counter()
    status = Path("/proc/self/status").read_text()
    peak_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    print(json.dumps({
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "storage": {s: type(d.x).__name__ + "/" + str(np.dtype(d.x.dtype)) for s, d in data.items()},
        "rows": {s: len(d.y) for s, d in data.items()},
        "seconds": {"load_sets": round(loaded - started, 1), "train_4000_steps": round(trained - loaded, 1),
                    "predict_test": round(done - trained, 1)},
        "test_accuracy": accuracy,
    }))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vectors", type=int, default=1_000_000)
    p.add_argument("--work_dir", default=None, help="Where the synthetic cache is built (default: a temp folder).")
    p.add_argument("--json", default=None)
    p.add_argument("--also_in_memory", action="store_true",
                   help="Also measure holding every set in memory (the behaviour before streaming), for comparison.")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--in_memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.vectors, args.in_memory)
        return 0
    from bench.machine import command, machine, write_result

    measured_on = machine()
    with tempfile.TemporaryDirectory(prefix="bench-million-") as tmp:
        directory = Path(args.work_dir or tmp)
        build_s = build_cache(directory, args.vectors)
        def measure(*extra):
            out = subprocess.run([sys.executable, "-m", "bench.train_million", f"--vectors={args.vectors}",
                                  f"--child={directory}", *extra], capture_output=True, text=True, check=True,
                                 cwd=REPO)
            return json.loads(out.stdout.strip().splitlines()[-1])

        figures = measure()
        if args.also_in_memory:
            figures["all_in_memory"] = measure("--in_memory")
    result = {"machine": measured_on,
              "command": command(argv),
              "vectors": args.vectors, "dim": DIM, "cache_build_s": round(build_s, 1), **figures,
              "note": "peak RSS of the child process (VmHWM); the machine was shared with other jobs"}
    print(json.dumps(result, indent=1))
    if args.json:
        write_result(args.json, result, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
