#!/usr/bin/env python3
"""The review loop's round trip: plant label errors, find them, move them back through the review page, run again.

    .venv/bin/python -m bench.review_round_trip [--image_dir ../shared/datasets/flower_photos_dev] [--plant 10]
        [--seed 0] [--other_seeds 2] [--retrain_flag=--preset=best ...]
        [--json bench/results/review-round-trip-MACHINE.json]

The photos are copied into a temporary folder (hard links: the review only renames files, never writes them),
and ``--plant`` of them (the same number from each class, chosen with ``--seed``) are moved to the next class's
folder.  retrain.py runs on the copy from an empty cache (with ``--other_seeds`` first, then with ``--seed``);
then ``python -m bottleneck review`` serves the page and every planted photo that the run flagged is moved
back to its own class by the page's own HTTP requests (the token from the printed address, POST /api/act),
and retrain.py runs again.  The round trip is timed from
the review command's start to the end of the second run.  Recorded: which planted photos the first run
flagged (and at what rank), that the second run computes no bottleneck and counts the photos that changed
class, that its suspected label errors no longer hold them and that each stayed in its set, and both runs'
test accuracy.  A test set of 90 photos moves by a point for one photo, and a different training set draws
different batches, so ``--other_seeds`` more runs before and after the fixes (warm, untimed) give test,
validation and cross-validated accuracy (over every photo) against the seed's own effect.

A run's own test accuracy judges the planted run against the planted test photo's wrong folder, and the fixed
run against its true class; each run's test accuracy is therefore also recorded against the true labels, the
same for both.  ``--retrain_flag`` (repeatable) hands a flag to every retrain.py run, such as a preset.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.machine import DEFAULT_IMAGE_DIR, command, commit_of, machine, scratch_outputs, write_result

REPO = Path(__file__).resolve().parent.parent
CACHE_LINE = re.compile(r"(\d+) bottlenecks cached, (\d+) imported, (\d+) to compute")
CHANGED_LINE = re.compile(r"(\d+) image\(s\) changed class since the previous run")


def copy_tree(source: Path, target: Path) -> int:
    """The class folders of ``source`` under ``target``, each file a hard link (a copy where links fail)."""
    count = 0
    for folder in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        (target / folder.name).mkdir(parents=True)
        for file in sorted(folder.iterdir()):
            if file.is_file():
                try:
                    os.link(file, target / folder.name / file.name)
                except OSError:
                    (target / folder.name / file.name).write_bytes(file.read_bytes())
                count += 1
    return count


def plant(images: Path, how_many: int, seed: int) -> dict[str, str]:
    """Move ``how_many`` photos, evenly over the classes, to the next class's folder: {planted place: true class}."""
    classes = sorted(p.name for p in images.iterdir() if p.is_dir())
    rng = random.Random(seed)
    planted = {}
    for k in range(how_many):
        source = classes[k % len(classes)]
        target = classes[(k + 1) % len(classes)]
        taken = {Path(place).name for place in planted}  # a planted photo is not planted again, one class on
        name = rng.choice(sorted(p.name for p in (images / source).iterdir()
                                 if p.name not in taken and not (images / target / p.name).exists()))
        os.rename(images / source / name, images / target / name)
        planted[f"{target}/{name}"] = source
    return planted


def retrain(images: Path, out: Path, seed: int, extra: list[str]) -> tuple[float, str, dict]:
    """One retrain.py run in a fresh process, with the ``extra`` flags: (wall seconds, its log, summary.json)."""
    flags = [f for f in scratch_outputs(out) if f != "--quiet"]  # the INFO lines say what the cache did
    started = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO / "retrain.py"), f"--image_dir={images}", *flags, *extra,
                             f"--random_seed={seed}"], capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"retrain.py failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return wall, result.stderr, json.loads((out / "graph_report" / "summary.json").read_text())


def suspected(report: Path, images: Path) -> dict[str, int]:
    """Suspected label errors: place relative to the image folder -> rank."""
    with open(report / "suspected_label_errors.csv", newline="", encoding="utf-8") as f:
        return {Path(row["path"]).relative_to(images).as_posix(): int(row["rank"]) for row in csv.DictReader(f)}


def sets_of(report: Path) -> dict[str, str]:
    """The run's set of each image, by its name relative to the class folder (which a move keeps)."""
    lines = (report / "run_images.jsonl").read_text().splitlines()[1:]
    return {entry["name"]: entry["set"] for entry in map(json.loads, lines)}


def ctrl_c_as_usual() -> None:
    """In the child: Ctrl-C's usual effect, even when this benchmark runs in the background (where it is ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def review_round(images: Path, out: Path, planted: dict[str, str]) -> tuple[dict, list[str]]:
    """Start the review command, move each flagged planted photo back through its HTTP API, stop it (Ctrl-C)."""
    timings = {}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "bottleneck", "review", f"--image_dir={images}",
                                f"--output_graph={out / 'graph.pb'}"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_usual)
    moved = []
    try:
        process.stdout.readline()
        url = process.stdout.readline().split()[1]
        timings["review_ready_s"] = time.perf_counter() - started
        base, token = url.split("/?token=")

        def call(path, body=None):
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(base + path, data, {"X-Review-Token": token,
                                                                 "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())

        state = call("/api/state")
        cards = {}
        for finding in state["findings"]:  # a photo's label-error card first, its misclassified card otherwise
            if finding["kind"] != "duplicate":
                image = finding["images"][0]
                cards.setdefault(f"{image['folder']}/{image['name']}", finding["id"])
        for place, true_class in planted.items():
            if place in cards:
                answer = call("/api/act", {"id": cards[place], "side": 0, "action": "move", "folder": true_class})
                if answer["ok"]:
                    moved.append(place)
        timings["moves_s"] = time.perf_counter() - started - timings["review_ready_s"]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
    timings["review_s"] = time.perf_counter() - started
    timings["review_exit_code"] = process.returncode
    return timings, moved


def true_label_test_accuracy(summary: dict, images: Path, misfiled: dict[str, str]) -> float:
    """The run's test accuracy with each test photo judged against its true class rather than its folder.

    ``misfiled``: the test photos in a folder not their own at this run, place -> true class.  A test photo
    that summary.json does not list as misclassified was predicted as its folder.
    """
    predicted = {Path(row["path"]).relative_to(images).as_posix(): row["predicted"]
                 for row in summary["misclassified"]}
    wrong = sum(place not in misfiled for place in predicted)
    wrong += sum(predicted.get(place) != true_class for place, true_class in misfiled.items())
    count = summary["accuracy"]["test_count"]
    return round((count - wrong) / count, 6)


def accuracies(summary: dict) -> dict:
    """Test and validation accuracy, and the data checks' cross-validated accuracy over every image."""
    return {"test": summary["accuracy"]["test"], "validation": summary["accuracy"]["validation"],
            "cross_validated": summary["data_checks"]["label_errors"]["cross_validated_accuracy"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", type=Path, default=Path(DEFAULT_IMAGE_DIR))
    p.add_argument("--plant", type=int, default=10, help="How many label errors to plant (default: 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--other_seeds", type=int, default=2,
                   help="Warm runs with other seeds, before and after the fixes, so that the accuracies can be set "
                        "against the seed's own effect (default: 2)")
    p.add_argument("--retrain_flag", action="append", default=[], metavar="FLAG",
                   help="A flag for every retrain.py run, such as --retrain_flag=--preset=best (repeatable)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    extra = args.retrain_flag
    measured_on = machine()
    with tempfile.TemporaryDirectory(prefix="review-round-trip-") as tmp:
        images, out = Path(tmp) / "images", Path(tmp) / "out"
        photos = copy_tree(args.image_dir, images)
        planted = plant(images, args.plant, args.seed)

        # Runs with other seeds first (the first of them cold): the review acts on the seed run's report.
        seeds = [args.seed + k for k in range(1, args.other_seeds + 1)]
        before = {seed: retrain(images, out, seed, extra) for seed in [*seeds, args.seed]}
        cold_wall = next(iter(before.values()))[0]
        _first_wall, _first_log, first = before[args.seed]
        first_suspects = suspected(out / "graph_report", images)
        first_sets = sets_of(out / "graph_report")

        started = time.perf_counter()
        review, moved = review_round(images, out, planted)
        second_wall, second_log, second = retrain(images, out, args.seed, extra)
        round_trip = time.perf_counter() - started
        after = {args.seed: (second_wall, second_log, second)}
        after.update({seed: retrain(images, out, seed, extra) for seed in seeds})
        second_suspects = suspected(out / "graph_report", images)  # findings and sets hang on no seed
        second_sets = sets_of(out / "graph_report")
        still_flagged = [place for place in planted
                         if place in second_suspects or f"{planted[place]}/{Path(place).name}" in second_suspects]
        cache = CACHE_LINE.search(second_log)
        changed = CHANGED_LINE.search(second_log)
        # The planted test photos, where each run found them: moved back ones are in their own folder after.
        misfiled = {"planted": {place: true_class for place, true_class in planted.items()
                                if first_sets[Path(place).name] == "testing"},
                    "fixed": {place: true_class for place, true_class in planted.items()
                              if place not in moved and second_sets[Path(place).name] == "testing"}}
        true_label_test = {state: {seed: true_label_test_accuracy(runs[seed][2], images, misfiled[state])
                                   for seed in sorted(runs)} for state, runs in (("planted", before), ("fixed", after))}

    results = {
        "command": command(argv),
        "commit": commit_of(REPO),
        "machine": measured_on,
        "shared_machine": True,
        "retrain_flags": extra,
        "image_dir": str(args.image_dir),
        "photos": photos,
        "planted": len(planted),
        "suspected_first_run": len(first_suspects),
        "planted_flagged_by_first_run": sum(place in first_suspects for place in planted),
        "moved_back_through_the_page": len(moved),
        "second_run_bottlenecks": {"cached": int(cache[1]), "imported": int(cache[2]), "to_compute": int(cache[3])}
        if cache else None,
        "second_run_changed_class": int(changed[1]) if changed else None,
        "planted_still_flagged_after": still_flagged,
        "suspected_second_run": len(second_suspects),
        "planted_kept_their_set": all(first_sets[Path(place).name] == second_sets[Path(place).name]
                                      for place in planted),
        "each_planted": {place: {"true_class": true_class, "first_run_rank": first_suspects.get(place),
                                 "moved_back": place in moved, "set_first_run": first_sets[Path(place).name],
                                 "set_second_run": second_sets[Path(place).name],
                                 "second_run_rank": second_suspects.get(f"{true_class}/{Path(place).name}")}
                         for place, true_class in planted.items()},
        "test_accuracy": {"first_run": first["accuracy"]["test"], "second_run": second["accuracy"]["test"]},
        "test_accuracy_no_lower": second["accuracy"]["test"] >= first["accuracy"]["test"],
        "test_images": first["accuracy"]["test_count"],
        "accuracy_by_seed": {state: {seed: accuracies(runs[seed][2]) for seed in sorted(runs)}
                             for state, runs in (("planted", before), ("fixed", after))},
        "mean_test_accuracy": {state: round(sum(r[2]["accuracy"]["test"] for r in runs.values()) / len(runs), 6)
                               for state, runs in (("planted", before), ("fixed", after))},
        "seconds": {"first_run_cold": round(cold_wall, 2), "review_ready": round(review["review_ready_s"], 2),
                    "moves_through_the_page": round(review["moves_s"], 2), "review_total": round(review["review_s"], 2),
                    "second_run": round(second_wall, 2), "round_trip": round(round_trip, 2)},
        "second_run_phases_s": second["timings_s"],
        "test_accuracy_true_labels": {
            "first_run": true_label_test["planted"][args.seed], "second_run": true_label_test["fixed"][args.seed],
            "no_lower": true_label_test["fixed"][args.seed] >= true_label_test["planted"][args.seed],
            "planted_test_photos": sorted(misfiled["planted"]), "by_seed": true_label_test},
        "review_exit_code": review["review_exit_code"],
    }
    print(json.dumps(results, indent=2))
    if args.json:
        write_result(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
