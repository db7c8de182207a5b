"""Does a cold retrain.py keep up with its own network?  A whole run's wall time against its forward passes.

    .venv/bin/python -m bench.cold_retrain [--image_dir ../shared/datasets/flower_photos_dev] \
        [--model_dir DIR] [--precision auto] [--runs 3] [--compare_with OTHER_CHECKOUT] [--json out.json]

Measured in this one process, on one machine:

1. the network's own rate at the run's precision, two ways: the strict
   yardstick is the fastest of several rounds of five pre-decoded batches of
   32, measured before and after the runs; the sustained one is a pass over
   every distinct image of the run, batch by batch, with only the network's
   calls timed (each batch is decoded outside the timing);
2. TensorFlow's own floor, in a fresh process: what a run pays before its
   forward passes reach their steady rate (Python's start, TensorFlow's
   import, loading the network, and its first batch's extra time: tracing,
   graph optimisation, first kernels), with no image decoded;
3. ``--runs`` cold ``retrain.py`` runs, each in a fresh process, as a user
   starts one: Python's start-up and TensorFlow's import, an empty bottleneck
   cache (the model already downloaded), every image, the default flags.

For each run: its wall time, the time its network alone needs for those
images (distinct images / the network's rate), and their ratio, the share of
the run that the forward passes would fill, by each yardstick; the same by
CPU time (this process's children), which other load on the machine disturbs
less; and the run's own phase timings from its summary.json.  The floor says
what no change to this tool can remove: a ratio of r leaves the run
network_s * (1/r - 1) seconds for everything else, the floor included.

With ``--compare_with`` the runs alternate between this checkout's retrain.py
and another checkout's (for example ``git worktree add /tmp/before <commit>``),
so a change is judged by the two medians measured in one session.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, commit_of, machine, rate_of, scratch_outputs, write_result

REPO = Path(__file__).resolve().parent.parent
BATCH = 32
BATCHES = 5  # per timed round
ROUNDS = 3


def network_rate(run, batches) -> tuple[float, float]:
    """The best images/s over ROUNDS rounds, and the least CPU seconds per image."""
    rounds = [rate_of(run, batches) for _round in range(ROUNDS)]
    return max(rate for rate, _cpu in rounds), min(cpu for _rate, cpu in rounds)


def sustained_rate(run, paths, height: int, width: int) -> float:
    """Images/s of the network over every one of ``paths``, batch by batch, with only its calls timed."""
    from bottleneck.data.images import load_for_model

    seconds = 0.0
    for start in range(0, len(paths), BATCH):
        batch = np.stack([load_for_model(path, height, width) for path in paths[start:start + BATCH]])
        started = time.perf_counter()
        np.asarray(run(batch))
        seconds += time.perf_counter() - started
    return len(paths) / seconds


# What a fresh process pays before the network's forward passes run at their steady rate, as retrain.py
# starts it: TensorFlow imported the tool's way, the network loaded at the precision, two batches of 32.
FLOOR = """
import time
started = time.perf_counter()
import json, os, sys
from bottleneck.model.tf_import import quiet_tensorflow
quiet_tensorflow("WARN")
imported = time.perf_counter()
import numpy as np
from bottleneck.model.modules import BUILTIN_MODULE, load_module
from bottleneck.model.runner import runner, with_precision
from bottleneck.model.precision import choose
model_dir, name = sys.argv[1], sys.argv[2]
precision = choose(name)
module = with_precision(load_module(BUILTIN_MODULE, model_dir), precision)
run = runner(module, precision, model_dir)
loaded = time.perf_counter()
batch = np.zeros((32, module.height, module.width, 3), np.float32)
np.asarray(run(batch))
first = time.perf_counter()
np.asarray(run(batch))
second = time.perf_counter()
print(json.dumps({"import_s": imported - started, "load_s": loaded - imported,
                  "first_batch_extra_s": (first - loaded) - (second - first), "steady_batch_s": second - first}),
      flush=True)
os._exit(0)  # as retrain.py ends: without Python's teardown
"""


def tensorflow_floor(model_dir: Path, precision: str) -> dict:
    """TensorFlow's fixed cost in a fresh process: Python's start to the network's steady rate, less one batch."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", FLOOR, str(model_dir), precision], capture_output=True, text=True,
                          cwd=REPO)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"the floor's process exited with {done.returncode}:\n{done.stderr[-3000:]}")
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    # The wall time also holds Python's start and the process's end; its two batches' steady time is network time.
    parts["seconds"] = wall - 2 * parts["steady_batch_s"]
    return parts


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_run(checkout: Path, image_dir: str, model_dir: Path, precision: str, scratch: Path) -> dict:
    out = scratch / "run"
    command = [sys.executable, str(checkout / "retrain.py"), f"--image_dir={image_dir}", f"--model_dir={model_dir}",
               f"--precision={precision}", *scratch_outputs(out)]
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"retrain.py exited with {done.returncode}:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "graph_report" / "summary.json").read_text())
    shutil.rmtree(out)
    return {"checkout": str(checkout), "commit": commit_of(checkout), "seconds": wall, "cpu_seconds": cpu,
            "timings_s": summary.get("timings_s")}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--model_dir", default=None)
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "bfloat16", "int8"))
    p.add_argument("--runs", type=int, default=3, help="cold runs (of each checkout, with --compare_with)")
    p.add_argument("--compare_with", default=None, help="another checkout whose retrain.py alternates with this one's")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    from bottleneck.data.digest import file_digest
    from bottleneck.data.images import load_for_model
    from bottleneck.data.walk import list_images
    from bottleneck.model.modules import BUILTIN_MODULE, load_module
    from bottleneck.model.precision import choose
    from bottleneck.model.runner import runner, with_precision
    from bottleneck.model.weights import default_model_dir, ensure_weights

    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    ensure_weights(model_dir)  # the runs are cold in their caches, not in the download
    paths = [im.path for c in list_images(args.image_dir).classes for im in c.images]
    distinct = list({file_digest(path): path for path in paths}.values())  # a run computes each content once
    precision = choose(args.precision)
    module = with_precision(load_module(BUILTIN_MODULE, model_dir), precision)
    run = runner(module, precision, model_dir, devices=[])  # int8: quantized here once, before any timing
    step = max(1, len(paths) // (BATCH * BATCHES))  # photos from every class
    decoded = np.stack([load_for_model(path, module.height, module.width) for path in paths[::step][:BATCH * BATCHES]])
    batches = [decoded[i:i + BATCH] for i in range(0, len(decoded), BATCH)]
    result = {"command": command(), "machine": machine(), "image_dir": args.image_dir, "images": len(paths),
              "distinct_images": len(distinct),
              "precision": precision.name, "precision_reason": precision.reason, "batch": BATCH, "runs": []}

    checkouts = [REPO] + ([Path(args.compare_with).resolve()] if args.compare_with else [])
    before = network_rate(run, batches)
    sustained = sustained_rate(run, distinct, module.height, module.width)
    floors = [tensorflow_floor(model_dir, args.precision)]
    with tempfile.TemporaryDirectory(prefix="cold-retrain-") as scratch:
        for i in range(args.runs):
            for checkout in checkouts:
                result["runs"].append(cold_run(checkout, args.image_dir, model_dir, args.precision, Path(scratch)))
                figures = result["runs"][-1]
                print(f"run {i + 1} of {checkout}: {figures['seconds']:.1f} s wall, {figures['cpu_seconds']:.1f} s "
                      f"CPU; phases {figures['timings_s']}", flush=True)
    floors.append(tensorflow_floor(model_dir, args.precision))
    after = network_rate(run, batches)
    rate, cpu_per_image = max(before[0], after[0]), min(before[1], after[1])
    network_s, network_cpu_s = len(distinct) / rate, len(distinct) * cpu_per_image
    sustained_s = len(distinct) / sustained
    floor = min(floors, key=lambda f: f["seconds"])
    result["network"] = {"images_per_s": rate, "before_runs": before[0], "after_runs": after[0],
                         "sustained_images_per_s": sustained, "cpu_s_per_image": cpu_per_image,
                         "seconds_for_all_images": network_s, "sustained_seconds_for_all_images": sustained_s}
    result["tensorflow_floor"] = {"least": floor, "measured": floors}
    for figures in result["runs"]:
        figures["network_share"] = network_s / figures["seconds"]
        figures["network_share_sustained"] = sustained_s / figures["seconds"]
        figures["network_share_by_cpu_time"] = network_cpu_s / figures["cpu_seconds"]
    print(f"{precision.name} ({precision.reason}); network alone {rate:.1f} images/s (before the runs "
          f"{before[0]:.1f}, after {after[0]:.1f}), so {network_s:.1f} s for {len(distinct)} distinct images; "
          f"sustained over all of them {sustained:.1f} images/s ({sustained_s:.1f} s)")
    budget = network_s * (1 / 0.85 - 1)
    print(f"TensorFlow's floor: {floor['seconds']:.2f} s (import {floor['import_s']:.2f}, loading the network "
          f"{floor['load_s']:.2f}, first batch's extra {floor['first_batch_extra_s']:.2f}); a ratio of 0.85 leaves "
          f"{budget:.2f} s for everything besides the forward passes")
    result["medians"] = {}
    for checkout in checkouts:
        runs = [r for r in result["runs"] if r["checkout"] == str(checkout)]
        median = {key: float(np.median([r[key] for r in runs]))
                  for key in ("seconds", "cpu_seconds", "network_share", "network_share_sustained",
                              "network_share_by_cpu_time")}
        result["medians"][str(checkout)] = median
        print(f"{checkout}: median {median['seconds']:.1f} s wall, {median['cpu_seconds']:.1f} s CPU; the network "
              f"alone is {median['network_share']:.2f} of the run ({median['network_share_sustained']:.2f} by the "
              f"sustained rate, {median['network_share_by_cpu_time']:.2f} by CPU time), over {len(runs)} runs: "
              + ", ".join(f"{r['network_share']:.2f}" for r in runs))
    if args.json:
        write_result(args.json, result)


if __name__ == "__main__":
    main()
