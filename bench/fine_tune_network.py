#!/usr/bin/env python3
"""Whole-network fine-tuning against the best linear setting, on the same images and split.

    .venv/bin/python -m bench.fine_tune_network [--image_dir ../shared/datasets/flower_photos_dev] \
        [--bottleneck_dir /tmp/bottleneck] [--seed 0] [--flag=--network_epochs=5 ...] \
        [--json bench/results/fine-tune-network-MACHINE.json]

Two retrain.py runs, each as a user would type it: ``--preset best`` (the best
documented linear setting: Adam on the mixed_9 bottleneck), then the same with
``--fine_tune_network`` (and any ``--flag``), which starts from that run's
layer and trains every block of the network on decoded, freshly distorted
images.  Recorded for each: validation and test accuracy, and both together
(the images neither trained on), the time of each phase, and for the
fine-tuned run its time per epoch and its validation accuracy after each
epoch.  The validation set also chose the kept epoch, so the test accuracy
is the figure that no choice has seen.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import DEFAULT_IMAGE_DIR, command, commit_of, machine, machine_name, scratch_outputs, write_result

REPO = Path(__file__).resolve().parent.parent


def retrain(image_dir: str, bottleneck_dir: str, out: Path, seed: int, extra: list[str]) -> dict:
    """One retrain.py run; its log goes to this benchmark's standard error as it comes (an epoch takes minutes)."""
    flags = [f for f in scratch_outputs(out) if not f.startswith("--bottleneck_dir") and f != "--quiet"]
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "retrain.py"), f"--image_dir={image_dir}",
                             f"--bottleneck_dir={bottleneck_dir}", *flags, f"--random_seed={seed}", "--preset=best",
                             "--validation_batch_size=-1",
                             *extra], stdout=subprocess.DEVNULL, cwd=REPO)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"retrain.py failed ({result.returncode}); its log is above.")
    summary = json.loads((out / "graph_report" / "summary.json").read_text())
    return {"seconds": round(wall, 1), "summary": summary}


def figures(run: dict) -> dict:
    summary = run["summary"]
    accuracy = summary["accuracy"]
    validation_n = summary["counts"]["per_split"]["validation"]
    test_n = accuracy["test_count"]
    validation, test = accuracy["validation"], accuracy["test"]
    together = None
    if validation_n:
        together = (round(validation * validation_n) + round(test * test_n)) / (validation_n + test_n)
    return {"validation_accuracy": validation, "validation_images": validation_n, "test_accuracy": test,
            "test_images": test_n, "validation_and_test_accuracy": together,
            "validation_and_test_images": (validation_n or 0) + test_n, "seconds": run["seconds"],
            "phases_s": summary["timings_s"]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    parser.add_argument("--bottleneck_dir", default="/tmp/bottleneck")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flag", action="append", default=[], help="a retrain.py flag for the fine-tuned run")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    record = machine()
    result = {"command": command(argv), "commit": commit_of(REPO), "machine": record, "image_dir": args.image_dir,
              "seed": args.seed}
    with tempfile.TemporaryDirectory() as scratch:
        linear = retrain(args.image_dir, args.bottleneck_dir, Path(scratch) / "linear", args.seed, [])
        result["linear"] = {"flags": ["--preset=best"], **figures(linear)}
        print(json.dumps(result["linear"], indent=1), flush=True)
        tuned = retrain(args.image_dir, args.bottleneck_dir, Path(scratch) / "tuned", args.seed,
                        ["--fine_tune_network", *args.flag])
        result["fine_tuned"] = {"flags": ["--preset=best", "--fine_tune_network", *args.flag], **figures(tuned),
                                "network_fine_tune": tuned["summary"]["network_fine_tune"]}
    gain = (result["fine_tuned"]["validation_and_test_accuracy"] - result["linear"]["validation_and_test_accuracy"])
    result["gain_points_validation_and_test"] = round(gain * 100, 2)
    result["gain_points_test"] = round((result["fine_tuned"]["test_accuracy"] - result["linear"]["test_accuracy"])
                                       * 100, 2)
    path = args.json or REPO / "bench" / "results" / f"fine-tune-network-{machine_name(record)}.json"
    write_result(path, result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1)[:4000])


if __name__ == "__main__":
    main()
