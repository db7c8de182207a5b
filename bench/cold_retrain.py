"""Does a cold retrain.py keep up with its own network?  A whole run's wall time against its forward passes.

    .venv/bin/python bench/cold_retrain.py [--image_dir ../shared/datasets/flower_photos_dev] \
        [--model_dir DIR] [--precision auto] [--runs 3] [--compare_with OTHER_CHECKOUT] [--json out.json]

Measured in this one process, on one machine:

1. the network's own rate at the run's precision: pre-decoded batches of 32,
   warm, the best of several rounds, measured before and after the runs (the
   fastest round counts, which is the strictest yardstick for the runs);
2. ``--runs`` cold ``retrain.py`` runs, each in a fresh process, as a user
   starts one: Python's start-up and TensorFlow's import, an empty bottleneck
   cache (the model already downloaded), every image, the default flags.

For each run: its wall time, the time its network alone needs for those
images (images / the network's rate), and their ratio, the share of the run
that the forward passes would fill; the same by CPU time (this process's
children), which other load on the machine disturbs less; and the run's own
phase timings from its summary.json.

With ``--compare_with`` the runs alternate between this checkout's retrain.py
and another checkout's (for example ``git worktree add /tmp/before <commit>``),
so a change is judged by the two medians measured in one session.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import DEFAULT_IMAGE_DIR, machine, rate_of, write_result  # bench/machine.py, beside this script

REPO = Path(__file__).resolve().parent.parent
BATCH = 32
BATCHES = 5  # per timed round
ROUNDS = 3


def network_rate(run, batches) -> tuple[float, float]:
    """The best images/s over ROUNDS rounds, and the least CPU seconds per image."""
    rounds = [rate_of(run, batches) for _round in range(ROUNDS)]
    return max(rate for rate, _cpu in rounds), min(cpu for _rate, cpu in rounds)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cold_run(checkout: Path, image_dir: str, model_dir: Path, precision: str, scratch: Path) -> dict:
    out = scratch / "run"
    command = [sys.executable, str(checkout / "retrain.py"), f"--image_dir={image_dir}", f"--model_dir={model_dir}",
               f"--precision={precision}", f"--bottleneck_dir={out / 'bottlenecks'}",
               f"--output_graph={out / 'graph.pb'}", f"--output_labels={out / 'labels.txt'}",
               f"--summaries_dir={out / 'summaries'}", f"--checkpoint_path={out / 'checkpoint' / 'ckpt'}", "--quiet"]
    cpu = children_cpu()
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu
    if done.returncode != 0:
        sys.exit(f"retrain.py exited with {done.returncode}:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "graph_report" / "summary.json").read_text())
    shutil.rmtree(out)
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"checkout": str(checkout), "commit": commit, "seconds": wall, "cpu_seconds": cpu,
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

    from bottleneck.images import load_for_model
    from bottleneck.inception_v3 import default_model_dir, ensure_weights
    from bottleneck.modules import BUILTIN_MODULE, load_module
    from bottleneck.network import runner, with_precision
    from bottleneck.precision import choose
    from bottleneck.walk import list_images

    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    ensure_weights(model_dir)  # the runs are cold in their caches, not in the download
    paths = [im.path for c in list_images(args.image_dir).classes for im in c.images]
    precision = choose(args.precision)
    module = with_precision(load_module(BUILTIN_MODULE, model_dir), precision)
    run = runner(module, precision, model_dir, devices=[])  # int8: quantized here once, before any timing
    step = max(1, len(paths) // (BATCH * BATCHES))  # photos from every class
    decoded = np.stack([load_for_model(path, module.height, module.width) for path in paths[::step][:BATCH * BATCHES]])
    batches = [decoded[i:i + BATCH] for i in range(0, len(decoded), BATCH)]
    result = {"command": " ".join(sys.argv), "machine": machine(), "python": platform.python_version(),
              "image_dir": args.image_dir, "images": len(paths), "precision": precision.name,
              "precision_reason": precision.reason, "batch": BATCH, "runs": []}

    checkouts = [REPO] + ([Path(args.compare_with).resolve()] if args.compare_with else [])
    before = network_rate(run, batches)
    with tempfile.TemporaryDirectory(prefix="cold-retrain-") as scratch:
        for i in range(args.runs):
            for checkout in checkouts:
                result["runs"].append(cold_run(checkout, args.image_dir, model_dir, args.precision, Path(scratch)))
                figures = result["runs"][-1]
                print(f"run {i + 1} of {checkout}: {figures['seconds']:.1f} s wall, {figures['cpu_seconds']:.1f} s "
                      f"CPU; phases {figures['timings_s']}", flush=True)
    after = network_rate(run, batches)
    rate, cpu_per_image = max(before[0], after[0]), min(before[1], after[1])
    network_s, network_cpu_s = len(paths) / rate, len(paths) * cpu_per_image
    result["network"] = {"images_per_s": rate, "before_runs": before[0], "after_runs": after[0],
                         "cpu_s_per_image": cpu_per_image, "seconds_for_all_images": network_s}
    for figures in result["runs"]:
        figures["network_share"] = network_s / figures["seconds"]
        figures["network_share_by_cpu_time"] = network_cpu_s / figures["cpu_seconds"]
    print(f"{precision.name} ({precision.reason}); network alone {rate:.1f} images/s (before the runs "
          f"{before[0]:.1f}, after {after[0]:.1f}), so {network_s:.1f} s for {len(paths)} images")
    result["medians"] = {}
    for checkout in checkouts:
        runs = [r for r in result["runs"] if r["checkout"] == str(checkout)]
        median = {key: float(np.median([r[key] for r in runs]))
                  for key in ("seconds", "cpu_seconds", "network_share", "network_share_by_cpu_time")}
        result["medians"][str(checkout)] = median
        print(f"{checkout}: median {median['seconds']:.1f} s wall, {median['cpu_seconds']:.1f} s CPU; the network "
              f"alone is {median['network_share']:.2f} of the run ({median['network_share_by_cpu_time']:.2f} by CPU "
              f"time), over {len(runs)} runs: " + ", ".join(f"{r['network_share']:.2f}" for r in runs))
    if args.json:
        write_result(args.json, result)


if __name__ == "__main__":
    main()
