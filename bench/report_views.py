"""What the report's views add to a warm run: heatmaps, thumbnails, the data map and the projector.

    .venv/bin/python -m bench.report_views [--image_dir ../shared/datasets/flower_photos_dev] [--runs 3] \
        [--bottleneck_dir DIR] [--json bench/results/report-views-$(.venv/bin/python -m bench.machine).json]

One untimed run fills the bottleneck cache (``--bottleneck_dir``: a cache
already filled for these images, which spares that cold run); then ``--runs``
times, each in a fresh process as a nightly job starts it, two warm runs
(every bottleneck cached, nothing new):

1. ``warm``: as a re-run over the same images finds it, with what the views
   keep from the run before (the map's points in the report folder, the
   heatmaps' grids and the thumbnails in the cache folder);
2. ``warm, nothing kept``: those three files removed first, as after a change
   to every image: the network runs for the heatmaps, every thumbnail is
   decoded and t-SNE places the map again.

Each run's views are timed inside it (summary.json's ``report_heatmaps``,
``report_thumbnails``, ``report_data_map``, ``report_projector``); their sum is
the extra cost, and the run's wall time without it is the warm run as it was
without the views.  Medians are reported.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, commit_of, machine, scratch_outputs, write_result

REPO = Path(__file__).resolve().parent.parent
VIEWS = ("report_heatmaps", "report_thumbnails", "report_data_map", "report_projector")
# What the views keep for the next run: report/data_map.py's MAP_FILE in the report folder, and
# report/heatmaps.py's GRIDS_FILE and report/sprite.py's TILES_FILE in the cache folder.
KEPT_IN_REPORT, KEPT_IN_CACHE = ("data_map.npz",), ("heatmap_grids.npz", "thumbnail_tiles.npz")


def run(args: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(REPO / "retrain.py"), *args], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"retrain.py exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bottleneck_dir", default=None, help="a bottleneck cache to use instead of a new one")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    measured_on = machine()

    with tempfile.TemporaryDirectory(prefix="report-views-") as scratch:
        flags = [f"--image_dir={args.image_dir}", *scratch_outputs(scratch)]
        cache = Path(args.bottleneck_dir or Path(scratch) / "bottlenecks")
        if args.bottleneck_dir:
            flags.append(f"--bottleneck_dir={args.bottleneck_dir}")  # the last one given wins
        report = Path(scratch) / "graph_report"
        run(flags)  # fills the cache, untimed
        rows = {"warm": [], "warm, nothing kept": []}
        for i in range(args.runs):
            for kind, row in rows.items():
                if kind != "warm":
                    for kept in [report / name for name in KEPT_IN_REPORT] + [cache / name for name in KEPT_IN_CACHE]:
                        kept.unlink(missing_ok=True)
                wall = run(flags)
                summary = json.loads((report / "summary.json").read_text())
                timings = {k: summary["timings_s"].get(k) or 0.0 for k in VIEWS}
                extra = sum(timings.values())
                row.append({"wall_s": wall, "views_s": timings, "extra_s": extra,
                            "share_of_warm_run": extra / (wall - extra), "views": summary["views"]})
                print(f"run {i + 1}, {kind}: {wall:.2f} s, views {extra:.2f} s ("
                      + ", ".join(f"{k[7:]} {v:.2f}" for k, v in timings.items())
                      + f"), {100 * extra / (wall - extra):.0f} % of the warm run without them", flush=True)

    medians = {kind: {"wall_s": float(np.median([r["wall_s"] for r in row])),
                      "extra_s": float(np.median([r["extra_s"] for r in row])),
                      "share_of_warm_run": float(np.median([r["share_of_warm_run"] for r in row])),
                      **{k: float(np.median([r["views_s"][k] for r in row])) for k in VIEWS}}
               for kind, row in rows.items()}
    for kind, m in medians.items():
        print(f"{kind}: median wall {m['wall_s']:.2f} s, views {m['extra_s']:.2f} s = "
              f"{100 * m['share_of_warm_run']:.0f} % of the warm run without them")
    if args.json:
        write_result(args.json, {"command": command(), "machine": measured_on, "image_dir": args.image_dir,
                                 "commit": commit_of(REPO), "runs": rows, "medians": medians})


if __name__ == "__main__":
    main()
