#!/usr/bin/env python3
"""Speed and memory of the whole tool: bottleneck creation against the network's own forward-pass rate,
the classic one-image-at-a-time baseline, retrain.py cold and warm, training steps/s, peak memory
of training at 10,000 and 200,000 cached bottlenecks, and label_image.py on a folder.

    .venv/bin/python -m bench.bench --image_dir PHOTOS [--model_dir DIR] [--quick] \
        [--json bench/results/figures-<machine>.json]

Everything it writes goes into one temporary folder that is removed at the end
(the image folder, the model folder and the project are only read).  See
bench/README.md for what each figure measures.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, machine, write_result

REPO = Path(__file__).resolve().parent.parent

DIM = 2048
WARM_TARGET_S = 15.0
RATIO_TARGET = 0.9
MEMORY_TARGET_MB = 2048.0


@dataclass(frozen=True)
class Sizes:
    extract_images: int  # figure 1: images through compute_missing
    ceiling_batches: int  # figure 1: timed batches of pre-decoded images
    baseline_images: int  # figure 2: images through the one-at-a-time classic loop
    retrain_per_class: int  # figure 3: images per class in the symlinked subset
    retrain_steps: int  # figure 3: --how_many_training_steps
    train_steps: int  # figure 4: steps timed in memory
    train_rows: int  # figure 4: synthetic training vectors for the speed figure
    memory_counts: tuple[int, ...]  # figure 4: cached bottlenecks for the memory figure
    memory_steps: int  # figure 4: steps run in the memory child
    label_images: int | None  # figure 5: None = every image under --image_dir
    startup_repeats: int  # figure 5: 1-image label_image runs (the fastest is the start-up)


FULL = Sizes(256, 6, 64, 40, 4000, 4000, 1000, (10_000, 200_000), 1000, None, 2)
QUICK = Sizes(32, 2, 8, 5, 1000, 1000, 1000, (2_000, 20_000), 200, 32, 1)


@dataclass
class Figure:
    key: str
    name: str
    value: float | None
    unit: str
    target: str = "-"
    ratio: float | None = None
    ratio_of: str = ""
    passed: bool | None = None  # None: no target, reported for information
    note: str = ""


@dataclass
class Bench:
    args: argparse.Namespace
    sizes: Sizes
    tmp: Path
    figures: list[Figure] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    ceiling: float | None = None  # images/s of the bare forward pass
    graph: Path | None = None  # frozen graph of the cold retrain run
    labels: Path | None = None

    def add(self, fig: Figure) -> None:
        self.figures.append(fig)
        shown = "n/a" if fig.value is None else f"{fig.value:.3g} {fig.unit}"
        say(f"  -> {fig.name}: {shown}" + (f" ({fig.note})" if fig.note else ""))


def say(msg: str = "") -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------ helpers


def spread(classes, n: int | None):
    """Up to n images taken round-robin over the classes (so every class is represented)."""
    out, i = [], 0
    longest = max(len(c.images) for c in classes)
    while i < longest and (n is None or len(out) < n):
        for c in classes:
            if i < len(c.images) and (n is None or len(out) < n):
                out.append((c, c.images[i]))
        i += 1
    return out


def symlink_folder(root: Path, picked) -> Path:
    """A class-per-folder tree of symbolic links to the picked images."""
    for image_class, image in picked:
        link = root / image_class.folder.name / image.name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(image.path.resolve())
    return root


def run_timed(cmd: list[str], log: Path, stdout=None) -> tuple[float, int]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    with open(log, "wb") as err:
        t = time.perf_counter()
        rc = subprocess.run(cmd, stdout=stdout if stdout is not None else err, stderr=err, cwd=REPO, env=env).returncode
        wall = time.perf_counter() - t
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        say(f"  !! {' '.join(cmd[:2])} exited with {rc}; last lines of its output:")
        for line in tail:
            say(f"     {line}")
    return wall, rc


def vm_status(key: str) -> float:
    """VmHWM / VmRSS of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------ figures 1 and 2


def bench_extraction(b: Bench, module, classes) -> None:
    import tensorflow as tf

    from bottleneck.cache.store import BottleneckCache, Entry
    from bottleneck.data.images import load_for_model
    from bottleneck.extraction.batches import Job, compute_missing
    from bottleneck.model.traced import network_fn

    s, bs = b.sizes, b.args.batch_size
    picked = spread(classes, s.extract_images)
    paths = [im.path for _c, im in picked]
    say(f"[1] Bottleneck creation: {len(paths)} images through extract.compute_missing (batch {bs}) "
        f"vs the bare forward pass on a pre-decoded batch of {bs}")
    features = network_fn(module)

    # The ceiling: the compiled network alone on an already-decoded numpy batch.
    batch = np.stack([load_for_model(p, module.height, module.width) for p in (paths * bs)[:bs]])
    t = time.perf_counter()
    features(batch).numpy()  # trace + first run
    first_call = time.perf_counter() - t
    features(batch).numpy()  # warm-up

    def time_batches(count):
        out = []
        for _ in range(count):
            t = time.perf_counter()
            features(batch).numpy()
            out.append(time.perf_counter() - t)
        return out

    # Half the ceiling batches run before the real path and half after, so that a change in the
    # machine's load during the run weighs on both sides of the ratio alike.
    before = time_batches((s.ceiling_batches + 1) // 2)
    say(f"    forward pass alone: {bs * len(before) / sum(before):.2f} images/s ({len(before)} batches of {bs}; "
        f"tracing + first call took {first_call:.1f} s, not counted)")

    # The real path: digests, then decode threads + batched network + SQLite commits, into a fresh cache.
    cache = BottleneckCache(b.tmp / "fig1_cache", module.identity, module.bottleneck_size, log=say)
    try:
        t = time.perf_counter()
        digest_of, errors = cache.digests(paths)
        jobs = [Job(Entry(digest_of[p]), p) for p in paths if p in digest_of]
        skipped = compute_missing(module, jobs, cache, batch_size=bs, features=features)
        elapsed = time.perf_counter() - t
        stored = len(cache.present([j.entry for j in jobs]))
    finally:
        cache.close()
    done = len(jobs) - len(skipped)
    rate = done / elapsed
    after = time_batches(s.ceiling_batches // 2)
    times = before + after
    ceiling = bs * len(times) / sum(times)
    b.ceiling = ceiling
    b.details["ceiling"] = {"batch_size": bs, "batch_seconds_before": [round(x, 3) for x in before],
                            "batch_seconds_after": [round(x, 3) for x in after],
                            "trace_and_first_call_s": round(first_call, 2)}
    b.details["extraction"] = {"images": done, "skipped": len(skipped) + len(errors), "seconds": round(elapsed, 2),
                               "stored_vectors": stored}
    b.add(Figure("bottleneck_creation", "1. bottleneck creation (compute_missing)", rate, "images/s",
                 f">= {RATIO_TARGET} x ceiling", rate / ceiling, "of ceiling",
                 rate / ceiling >= RATIO_TARGET, f"{done} images in {elapsed:.1f} s"))
    b.add(Figure("forward_ceiling", f"   forward-pass ceiling (batch {bs})", ceiling, "images/s",
                 note=f"{len(times)} warm batches"))

    # Figure 2: the classic one-image-at-a-time loop on a subset of the same images.
    base_paths = paths[: s.baseline_images]
    say(f"[2] Classic baseline: {len(base_paths)} images one at a time "
        "(read, tf decode_jpeg + bilinear resize, network on a batch of 1, comma-separated .txt per image)")

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decode(data):
        # The classic graph: decode_jpeg -> float -> expand_dims -> resize_bilinear -> [0, 1].
        image = tf.cast(tf.io.decode_jpeg(data, channels=3), tf.float32)
        image = tf.image.resize(tf.expand_dims(image, 0), [module.height, module.width], method="bilinear")
        return image * (1.0 / 255.0)

    out_root = b.tmp / "fig2_classic_txt"
    features(decode(tf.constant(Path(base_paths[0]).read_bytes()))).numpy()  # warm-up, batch of one
    t = time.perf_counter()
    failures = 0
    for path in base_paths:
        target = out_root / path.parent.name / f"{path.name}_inception_v3.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as f:
            data = f.read()
        try:
            pixels = decode(tf.constant(data))
        except tf.errors.InvalidArgumentError:
            failures += 1
            continue
        values = np.squeeze(features(pixels).numpy())
        target.write_text(",".join(str(x) for x in values))
    elapsed2 = time.perf_counter() - t
    base_rate = (len(base_paths) - failures) / elapsed2
    b.details["classic_baseline"] = {"images": len(base_paths) - failures, "failures": failures,
                                     "seconds": round(elapsed2, 2)}
    b.add(Figure("classic_baseline", "2. classic one-at-a-time baseline", base_rate, "images/s",
                 note=f"{len(base_paths) - failures} images in {elapsed2:.1f} s"))
    b.add(Figure("speedup_vs_classic", "   bottleneck creation vs classic", rate / base_rate, "x faster",
                 ratio=rate / base_rate, ratio_of="x classic"))


# ------------------------------------------------------------------ figure 3


def retrain_cmd(b: Bench, image_dir: Path, bottleneck_dir: Path, out: Path, steps: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    return [
        sys.executable, str(REPO / "retrain.py"),
        "--image_dir", str(image_dir),
        "--bottleneck_dir", str(bottleneck_dir),
        "--model_dir", str(b.args.model_dir),
        "--how_many_training_steps", str(steps),
        "--output_graph", str(out / "output_graph.pb"),
        "--output_labels", str(out / "output_labels.txt"),
        "--summaries_dir", str(out / "retrain_logs"),
        "--checkpoint_path", str(out / "_retrain_checkpoint"),
        "--intermediate_output_graphs_dir", str(out / "intermediate_graph"),
        "--report_dir", str(out / "report"),
    ]


def bench_retrain(b: Bench, classes) -> None:
    s = b.sizes
    per_class = {c.label: c.images[: s.retrain_per_class] for c in classes}
    picked = [(c, im) for c in classes for im in per_class[c.label]]
    subset = symlink_folder(b.tmp / "fig3_images", picked)
    n = len(picked)
    say(f"[3] retrain.py as a subprocess on a subset of {n} images ({s.retrain_per_class} per class, "
        f"{len(classes)} classes), {s.retrain_steps} steps: cold (empty cache), then warm (full cache)")

    wall, rc = run_timed([sys.executable, "-c", "import tensorflow"], b.tmp / "tf_import.log")
    b.details["python_tf_import_s"] = round(wall, 2)
    say(f"    (python + 'import tensorflow' alone: {wall:.1f} s)")

    bottlenecks = b.tmp / "fig3_bottlenecks"
    cold_out = b.tmp / "fig3_cold"
    cold, rc_cold = run_timed(retrain_cmd(b, subset, bottlenecks, cold_out, s.retrain_steps), b.tmp / "cold.log")
    forward_only = n / b.ceiling if b.ceiling else None
    b.details["retrain"] = {"subset_images": n, "per_class": s.retrain_per_class, "steps": s.retrain_steps,
                            "cold_s": round(cold, 2), "cold_rc": rc_cold}
    b.add(Figure("retrain_cold", f"3. retrain.py cold, {n} images", cold if rc_cold == 0 else None, "s",
                 ratio=(cold / forward_only) if forward_only and rc_cold == 0 else None,
                 ratio_of=f"x forward-only {forward_only:.0f} s" if forward_only else "",
                 passed=None if rc_cold == 0 else False, note=f"exit {rc_cold}"))
    if rc_cold == 0:
        b.graph, b.labels = cold_out / "output_graph.pb", cold_out / "output_labels.txt"

    warm, rc_warm = run_timed(retrain_cmd(b, subset, bottlenecks, b.tmp / "fig3_warm", s.retrain_steps),
                              b.tmp / "warm.log")
    b.details["retrain"].update({"warm_s": round(warm, 2), "warm_rc": rc_warm})
    b.add(Figure("retrain_warm", f"3. retrain.py warm, {n} images", warm if rc_warm == 0 else None, "s",
                 f"< {WARM_TARGET_S:g} s", warm / WARM_TARGET_S if rc_warm == 0 else None, "of target",
                 rc_warm == 0 and warm < WARM_TARGET_S, f"exit {rc_warm}"))


# ------------------------------------------------------------------ figure 4


def bench_training_speed(b: Bench) -> None:
    from bottleneck.cache.sets import SplitData
    from bottleneck.training.layer import TrainSettings, train_layer

    s = b.sizes
    classes = 5
    say(f"[4] train.train_layer on {s.train_rows} in-memory synthetic vectors: {s.train_steps} steps of batch 100, "
        f"{classes} classes, dim {DIM}, eval every 10 steps")
    rng = np.random.default_rng(0)
    train = SplitData(rng.random((s.train_rows, DIM), dtype=np.float32), rng.integers(0, classes, s.train_rows,
                      dtype=np.int32), [])
    val = SplitData(rng.random((100, DIM), dtype=np.float32), rng.integers(0, classes, 100, dtype=np.int32), [])
    t = time.perf_counter()
    train_layer(train, val, classes, TrainSettings(steps=s.train_steps, eval_step_interval=10, seed=0))
    elapsed = time.perf_counter() - t
    rate = s.train_steps / elapsed
    b.details["training_speed"] = {"steps": s.train_steps, "seconds": round(elapsed, 2), "includes": "tracing"}
    b.add(Figure("train_steps_per_s", "4. training steps/s (train_layer)", rate, "steps/s",
                 ratio=4000 / rate, ratio_of="s per 4,000 steps",
                 note=f"{s.train_steps} steps in {elapsed:.1f} s, tracing included"))


def write_synthetic_cache(directory: Path, count: int, classes: int = 5) -> tuple[float, int]:
    """count random vectors stored through BottleneckCache.put, in transactions of 2,000."""
    from bottleneck.cache.store import BottleneckCache, Entry

    rng = np.random.default_rng(count)
    cache = BottleneckCache(directory, "bench-synthetic", DIM, log=say)
    t = time.perf_counter()
    try:
        for start in range(0, count, 2000):
            stop = min(count, start + 2000)
            block = rng.random((stop - start, DIM), dtype=np.float32) * 4
            cache.put([(Entry(f"{i:064x}"), block[i - start]) for i in range(start, stop)])
    finally:
        cache.close()
    size = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    return time.perf_counter() - t, size


def memory_child(directory: str, count: int, steps: int) -> None:
    """Child process: load the cached vectors exactly as sets.load_sets does, train, print memory as JSON."""
    from bottleneck.model.tf_import import quiet_tensorflow

    quiet_tensorflow("WARN")
    from bottleneck.cache.sets import FLOAT16_ABOVE_BYTES, load_sets
    from bottleneck.cache.store import BottleneckCache
    from bottleneck.data.split import ClassSplit
    from bottleneck.data.walk import ImageFile
    from bottleneck.training.layer import TrainSettings, train_layer
    from bottleneck.training.numerics import layer_probabilities

    classes = 5
    after_import = vm_status("VmRSS")
    splits = [ClassSplit(label=f"class{c}") for c in range(classes)]
    digest_of = {}
    for i in range(count):
        image = ImageFile(Path(f"/synthetic/class{i % classes}/{i}.jpg"), f"{i}.jpg")
        digest_of[image.path] = f"{i:064x}"
        # 80 / 10 / 10, like the default --validation_percentage and --testing_percentage.
        set_name = "validation" if i % 10 == 8 else "testing" if i % 10 == 9 else "training"
        splits[i % classes].of(set_name).append(image)
    cache = BottleneckCache(directory, "bench-synthetic", DIM)
    t = time.perf_counter()
    try:
        data = load_sets(cache, splits, digest_of, DIM)
    finally:
        cache.close()
    load_s = time.perf_counter() - t
    after_load = vm_status("VmRSS")
    t = time.perf_counter()
    layer = train_layer(data["training"], data["validation"], classes, TrainSettings(steps=steps, seed=0))
    layer_probabilities(layer, data["testing"].x)
    train_s = time.perf_counter() - t
    print(json.dumps({
        "count": count, "dtypes": {s: str(d.x.dtype) for s, d in data.items()},
        "matrix_mb": round(sum(d.x.nbytes for d in data.values()) / 2**20, 1),
        "float16_above_bytes": FLOAT16_ABOVE_BYTES,
        "rss_after_import_mb": round(after_import, 1), "rss_after_load_mb": round(after_load, 1),
        "peak_rss_mb": round(vm_status("VmHWM"), 1), "load_s": round(load_s, 2), "train_s": round(train_s, 2),
        "steps": steps,
    }), flush=True)


def bench_memory(b: Bench) -> None:
    s = b.sizes
    say(f"[4] Peak memory of the training phase at {', '.join(f'{n:,}' for n in s.memory_counts)} cached "
        f"bottlenecks: SQLite cache written here, then a separate process loads it like sets.load_sets "
        f"and runs {s.memory_steps} steps")
    b.details["memory"] = []
    for count in s.memory_counts:
        directory = b.tmp / f"fig4_cache_{count}"
        write_s, size = write_synthetic_cache(directory, count)
        say(f"    wrote {count:,} vectors ({size / 2**20:,.0f} MiB of SQLite) in {write_s:.1f} s")
        cmd = [sys.executable, "-m", "bench.bench", "--_memory_child", str(directory), str(count),
               str(s.memory_steps)]  # run_timed runs it from the repository root
        log = b.tmp / f"memory_{count}.log"
        with open(b.tmp / f"memory_{count}.json", "wb") as out:
            wall, rc = run_timed(cmd, log, stdout=out)
        shutil.rmtree(directory, ignore_errors=True)
        result = None
        if rc == 0:
            lines = (b.tmp / f"memory_{count}.json").read_text().strip().splitlines()
            result = json.loads(lines[-1])
            result.update({"write_s": round(write_s, 1), "sqlite_mb": round(size / 2**20),
                           "child_wall_s": round(wall, 1)})
        b.details["memory"].append(result or {"count": count, "rc": rc})
        peak = result["peak_rss_mb"] if result else None
        big = count == max(s.memory_counts)
        note = (f"training set {result['dtypes']['training']}, load {result['load_s']:.1f} s, "
                f"train {result['train_s']:.1f} s" if result else f"exit {rc}")
        b.add(Figure(f"peak_rss_{count}", f"4. peak RSS, {count:,} bottlenecks", peak, "MiB",
                     f"< {MEMORY_TARGET_MB:g} MiB" if big else "-",
                     peak / MEMORY_TARGET_MB if peak else None, "of 2 GiB",
                     (peak is not None and peak < MEMORY_TARGET_MB) if big else (None if peak else False), note))


# ------------------------------------------------------------------ figure 5


def bench_label_image(b: Bench) -> None:
    from bottleneck.label_image.engine import expand_inputs

    s = b.sizes
    if b.graph is None or not b.graph.is_file():
        say("[5] label_image.py: skipped, the cold retrain run wrote no graph")
        b.add(Figure("label_image", "5. label_image.py", None, "images/s", passed=False, note="no graph"))
        return
    folder = Path(b.args.image_dir)
    if s.label_images is not None:
        listing = _listing(folder)
        folder = symlink_folder(b.tmp / "fig5_images", spread(listing.classes, s.label_images))
    paths = expand_inputs([str(folder)])
    n = len(paths)
    say(f"[5] label_image.py as a subprocess on {n} images (stdout to /dev/null), minus its start-up on 1 image")
    base = [sys.executable, str(REPO / "label_image.py"), "--graph", str(b.graph), "--labels", str(b.labels)]
    startups = []
    for i in range(s.startup_repeats):
        wall, rc = run_timed(base + [str(paths[0])], b.tmp / f"label_one_{i}.log", stdout=subprocess.DEVNULL)
        if rc == 0:
            startups.append(wall)
    wall, rc = run_timed(base + [str(folder)], b.tmp / "label_all.log", stdout=subprocess.DEVNULL)
    if rc != 0 or not startups:
        b.add(Figure("label_image", "5. label_image.py", None, "images/s", passed=False, note=f"exit {rc}"))
        return
    startup = min(startups)
    rate = n / (wall - startup)
    b.details["label_image"] = {"images": n, "wall_s": round(wall, 2), "startup_s": [round(x, 2) for x in startups]}
    ratio = rate / b.ceiling if b.ceiling else None
    b.add(Figure("label_image", f"5. label_image.py, {n} images", rate, "images/s", ratio=ratio,
                 ratio_of="of ceiling", note=f"{wall:.1f} s wall - {startup:.1f} s start-up"))


# ------------------------------------------------------------------ report


def _listing(image_dir: Path):
    from bottleneck.data.walk import list_images

    return list_images(image_dir)


def print_table(b: Bench, measured_on: dict, total_s: float) -> None:
    say()
    say("=" * 100)
    say(f"Machine: {measured_on['cpu_model']}, {measured_on['cores']} cores, {measured_on['ram_gb']} GB RAM, "
        f"TensorFlow {measured_on['tensorflow']}, GPUs: {', '.join(measured_on['gpus']) or 'none'}, "
        f"load average at start {measured_on['load_average_1min_at_start']}")
    say(f"Mode: {'quick (smoke sizes, not for publishing)' if b.args.quick else 'full'}; total {total_s:.0f} s")
    say("-" * 100)
    say(f"{'figure':<40} {'value':>16} {'target':>17} {'ratio':>24} {'result':>6}")
    for f in b.figures:
        value = "n/a" if f.value is None else f"{f.value:,.2f} {f.unit}"
        ratio = "" if f.ratio is None else f"{f.ratio:.2f} {f.ratio_of}"
        result = {True: "PASS", False: "FAIL", None: "info"}[f.passed]
        say(f"{f.name:<40} {value:>16} {f.target:>17} {ratio:>24} {result:>6}")
    say("=" * 100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR,
                   help="Folder of class sub-folders of images (default: %(default)s).")
    p.add_argument("--model_dir", default=None, help="Where the converted Inception-v3 weights are "
                   "(default: retrain.py's default model dir).")
    p.add_argument("--quick", action="store_true", help="Smoke run with small sizes (under 3 minutes).")
    p.add_argument("--json", default=None, help="Also write the figures, machine and details to this JSON file.")
    p.add_argument("--batch_size", type=int, default=32, help="Extraction batch size (retrain.py's default: 32).")
    p.add_argument("--tmp_dir", default=None, help="Where the temporary folder goes (needs ~2 GB free in a full run).")
    p.add_argument("--_memory_child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._memory_child:
        directory, count, steps = args._memory_child
        memory_child(directory, int(count), int(steps))
        return 0

    from bottleneck.model import weights

    if args.model_dir is None:
        args.model_dir = str(weights.default_model_dir())
    if not weights.weights_path(args.model_dir).is_file():
        say(f"bench.py: error: no converted Inception-v3 weights in {args.model_dir}; run the setup (or retrain.py "
            "once) to convert them, or pass --model_dir to a folder that has them.")
        return 2
    image_dir = Path(args.image_dir)
    if not image_dir.is_dir():
        say(f"bench.py: error: image folder {image_dir} not found; pass --image_dir.")
        return 2

    started = time.perf_counter()
    from bottleneck.model.tf_import import quiet_tensorflow

    quiet_tensorflow("WARN")
    measured_on = machine()
    sizes = QUICK if args.quick else FULL
    from bottleneck.model.modules import load_module

    classes = _listing(image_dir).classes
    module = load_module("inception_v3", args.model_dir, log=say)
    tmp = Path(tempfile.mkdtemp(prefix="bottleneck-bench-", dir=args.tmp_dir))
    b = Bench(args, sizes, tmp)
    say(f"Benchmark ({'quick' if args.quick else 'full'}) of {image_dir}; temporary files in {tmp}")
    try:
        for section in (lambda: bench_extraction(b, module, classes), lambda: bench_retrain(b, classes),
                        lambda: bench_training_speed(b), lambda: bench_memory(b), lambda: bench_label_image(b)):
            t = time.perf_counter()
            try:
                section()
            except Exception as exc:  # one broken section should not hide the others
                say(f"  !! section failed: {type(exc).__name__}: {exc}")
                b.details.setdefault("errors", []).append(f"{type(exc).__name__}: {exc}")
            say(f"    ({time.perf_counter() - t:.0f} s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - started
    print_table(b, measured_on, total)
    if args.json:
        write_result(args.json, {
            "command": command(argv), "machine": measured_on, "mode": "quick" if args.quick else "full",
            "image_dir": str(image_dir), "total_s": round(total, 1), "sizes": sizes.__dict__,
            "figures": [f.__dict__ for f in b.figures], "details": b.details,
        })
        say(f"Wrote {args.json}")
    return 1 if any(f.passed is False for f in b.figures) else 0


if __name__ == "__main__":
    sys.exit(main())
