"""What the commands cost whatever the data: wall times of short runs, where start-up and fixed costs dominate.

    .venv/bin/python -m bench.start_up [--image_dir ../shared/datasets/flower_photos_dev] [--runs 5] \
        [--compare_with OTHER_CHECKOUT] [--json out.json]

Three commands, each in a fresh process as a user or a cron job starts it:

1. ``cold-sample``: retrain.py on the bundled sample (examples/flower_photos),
   with an empty bottleneck cache: a few dozen forward passes, every fixed cost;
2. ``warm-rerun``: retrain.py again over ``--image_dir`` with its cache full, as
   a nightly job runs when nothing is new: no forward pass at all;
3. ``label-one``: label_image.py on one photo with the graph of that run.

With ``--compare_with`` every command alternates between this checkout and
another (``git worktree add /tmp/before <commit>``), run by run, so both are
measured under the same load; medians are reported.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, commit_of, machine, scratch_outputs, write_result

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "flower_photos"
ONE_PHOTO = sorted((REPO / "examples" / "held_out").iterdir())[0]


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:2])} exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR, help="the data set of the warm re-run")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--compare_with", default=None, help="another checkout whose commands alternate with this one's")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    measured_on = machine()

    checkouts = [REPO] + ([Path(args.compare_with).resolve()] if args.compare_with else [])
    times = {str(c): {"cold-sample": [], "warm-rerun": [], "label-one": []} for c in checkouts}
    with tempfile.TemporaryDirectory(prefix="start-up-") as scratch:
        warm = {c: Path(scratch) / f"warm-{i}" for i, c in enumerate(checkouts)}
        for checkout in checkouts:  # fill each checkout's cache once, untimed
            timed([sys.executable, str(checkout / "retrain.py"), f"--image_dir={args.image_dir}",
                   *scratch_outputs(warm[checkout])])
        for i in range(args.runs):
            for checkout in checkouts:
                cold = Path(scratch) / "cold"
                shutil.rmtree(cold, ignore_errors=True)
                row = times[str(checkout)]
                row["cold-sample"].append(timed([sys.executable, str(checkout / "retrain.py"),
                                                 f"--image_dir={SAMPLE}", *scratch_outputs(cold)]))
                row["warm-rerun"].append(timed([sys.executable, str(checkout / "retrain.py"),
                                                f"--image_dir={args.image_dir}", *scratch_outputs(warm[checkout])]))
                row["label-one"].append(timed([sys.executable, str(checkout / "label_image.py"),
                                               f"--graph={warm[checkout] / 'graph.pb'}",
                                               f"--labels={warm[checkout] / 'labels.txt'}", f"--image={ONE_PHOTO}"]))
                print(f"run {i + 1} of {checkout}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in row.items()),
                      flush=True)

    commits = {str(c): commit_of(c) for c in checkouts}
    medians = {c: {k: float(np.median(v)) for k, v in row.items()} for c, row in times.items()}
    for c, row in medians.items():
        print(f"{c} ({commits[c]}): medians " + ", ".join(f"{k} {v:.2f} s" for k, v in row.items()))
    if args.compare_with:
        this, other = medians[str(checkouts[0])], medians[str(checkouts[1])]
        print("this checkout ÷ the other: " + ", ".join(f"{k} {this[k] / other[k]:.2f}" for k in this))
    if args.json:
        write_result(args.json, {"command": command(), "machine": measured_on, "image_dir": args.image_dir,
                                 "sample": str(SAMPLE.relative_to(REPO)), "photo": str(ONE_PHOTO.relative_to(REPO)),
                                 "commits": commits, "seconds": times, "medians": medians})


if __name__ == "__main__":
    main()
