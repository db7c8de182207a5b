#!/usr/bin/env python3
"""What the data checks and report.html cost, and what they find, on a warm retrain.py run.

    .venv/bin/python -m bench.data_checks --image_dir ../shared/datasets/flower_photos_dev \\
        --bottleneck_dir DIR [--repeats 3] [--json bench/results/data-checks-MACHINE.json]

``--bottleneck_dir`` must already hold the set's bottlenecks (one earlier retrain.py run), so every
run here is warm.  retrain.py runs as a subprocess, alternately with and without --skip_data_checks,
``--repeats`` times each, in one session; the figures are medians.  It also reports, from the last
full run: calibration error before and after temperature scaling, accuracy and coverage at a few
thresholds, and the ranks of chosen images (--watch) among the suspected label errors.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import command, machine, write_result

REPO = Path(__file__).resolve().parent.parent
# Three test photos of flower_photos_dev that are not of their class, found by eye in an accuracy study.
WATCH = ("roses/14381787252_e8e12e277a_n.jpg", "tulips/14116780333_7836f4448c.jpg",
         "tulips/14097328354_4f1469a170.jpg")


def run_once(image_dir: Path, bottleneck_dir: Path, out: Path, skip: bool, seed: int,
             extra=()) -> tuple[float, dict]:
    cmd = [sys.executable, str(REPO / "retrain.py"), f"--image_dir={image_dir}",
               f"--bottleneck_dir={bottleneck_dir}",
               f"--output_graph={out / 'graph.pb'}", f"--output_labels={out / 'labels.txt'}",
               f"--summaries_dir={out / 'logs'}", f"--checkpoint_path={out / 'ckpt' / 'ckpt'}",
               f"--random_seed={seed}", "--quiet", *extra] + (["--skip_data_checks"] if skip else [])
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"retrain.py failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return wall, json.loads((out / "graph_report" / "summary.json").read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", type=Path, required=True)
    p.add_argument("--bottleneck_dir", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--watch", nargs="*", default=list(WATCH), help="Paths relative to --image_dir to rank.")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--retrain_flag", action="append", default=[], help="Passed to retrain.py (repeatable).")
    args = p.parse_args(argv)
    measured_on = machine()
    walls = {"with": [], "without": []}
    inside = []
    with tempfile.TemporaryDirectory() as tmp:
        full = None
        run_once(args.image_dir, args.bottleneck_dir, Path(tmp) / "warmup", False, args.seed,
                 args.retrain_flag)  # caches warm
        for _ in range(args.repeats):
            for mode in ("without", "with"):
                wall, summary = run_once(args.image_dir, args.bottleneck_dir, Path(tmp) / mode, mode == "without",
                                         args.seed, args.retrain_flag)
                walls[mode].append(wall)
                if mode == "with":
                    t = summary["timings_s"]
                    inside.append(t.get("data_checks", 0) + t.get("report_page", 0))
                    full = summary
        report = Path(tmp) / "with" / "graph_report"
        with open(report / full["files"]["suspected_label_errors"], newline="", encoding="utf-8") as f:
            ranks = {row["path"]: int(row["rank"]) for row in csv.DictReader(f)}
        page_bytes = (report / "report.html").stat().st_size
    without, with_ = statistics.median(walls["without"]), statistics.median(walls["with"])
    cal = full["calibration"]
    results = {
        "command": command(argv),
        "machine": measured_on,
        "shared_machine": True,
        "walls_s": walls,
        "median_wall_without_checks_s": round(without, 2),
        "median_wall_with_checks_s": round(with_, 2),
        "added_share_wall": round((with_ - without) / without, 4),
        "median_checks_plus_page_s": round(statistics.median(inside), 3),
        "added_share_inside": round(statistics.median(inside) / without, 4),
        "page_bytes": page_bytes,
        "test_accuracy": full["accuracy"]["test"],
        "cross_validated_accuracy": full["data_checks"]["label_errors"]["cross_validated_accuracy"],
        "temperature": cal["temperature"],
        "ece": cal["ece"],
        "coverage_test": cal["coverage"],
        "disputed": full["data_checks"]["label_errors"]["disputed"],
        "watched_ranks": {w: ranks.get(str(args.image_dir / w)) for w in args.watch},
        "duplicates": full["data_checks"]["duplicates"],
        "leakage": full["data_checks"]["leakage"],
    }
    print(json.dumps(results, indent=2))
    if args.json:
        write_result(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
