"""Bottleneck creation: the local Beam pipeline against the tool's own extraction, on one machine, in one run.

    .venv/bin/python -m bench.beam_vs_local --image_dir /path/to/flower_photos_dev [--json bench/results/x.json]

Each run starts from an empty cache and computes every image's bottleneck with the
built-in Inception-v3 (float32), including hashing the files:
  tool: cache.digests + extract.compute_missing (what retrain.py does);
  beam: bottleneck.scale_out.beam_bottlenecks.create_bottlenecks on the DirectRunner defaults
        (start-up, listing, hashing, decoding, RunInference, Parquet shards), with the
        feature extractor already exported (a one-off per module, timed apart).
Wall time on a shared machine swings with other jobs, so each run's CPU time (all threads of this
process) is recorded too: the cost of an image, and the steadier ratio.  The module is loaded once,
before all runs; by default the runs go tool, Beam, Beam, tool, so that a
load on a shared machine that drifts steadily weighs on both alike.  The figure of merit is beam rate /
tool rate, each over all its runs.
Also measured: the shards' size per image and the time to import them into a new cache.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from bench.machine import command, machine, write_result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_dir", required=True)
    p.add_argument("--model_dir", default=None)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--order", default="TBBT",
                   help="The runs, in order: T the tool, B the Beam pipeline. The default TBBT cancels a load on a "
                        "shared machine that drifts steadily; each figure is the sum over its runs.")
    p.add_argument("--json", default=None, help="Also write the figures to this file.")
    args = p.parse_args(argv)

    from bottleneck.cache.shards import import_shards
    from bottleneck.cache.store import BottleneckCache, Entry
    from bottleneck.data.walk import list_images
    from bottleneck.extraction.batches import Job, compute_missing
    from bottleneck.model.modules import load_module
    from bottleneck.model.tf_import import quiet_tensorflow
    from bottleneck.model.weights import default_model_dir
    from bottleneck.scale_out.beam_bottlenecks import create_bottlenecks, stage_model

    quiet_tensorflow("WARN")
    measured_on = machine()
    module = load_module("inception_v3", Path(args.model_dir) if args.model_dir else default_model_dir(),
                         log=lambda *_: None)
    paths = [im.path for c in list_images(args.image_dir).classes for im in c.images]
    with tempfile.TemporaryDirectory(prefix="bench-beam-") as tmp:
        tmp = Path(tmp)

        def run_tool(n: int):
            started = time.perf_counter()
            cache = BottleneckCache(tmp / f"tool-{n}", module.identity, module.bottleneck_size)
            digest_of, _unreadable = cache.digests(paths)
            first = {}
            for path in paths:
                first.setdefault(digest_of[path], path)
            skipped = compute_missing(module, [Job(Entry(d), p) for d, p in first.items()], cache, args.batch_size)
            cache.close()
            return time.perf_counter() - started, len(first) - len(skipped)

        def run_beam(n: int):
            started = time.perf_counter()
            outcome = create_bottlenecks(args.image_dir, tmp / f"shards-{n}", module, None, args.batch_size,
                                         log=lambda *_: None)
            return time.perf_counter() - started, outcome.computed

        started = time.perf_counter()
        model_uri = stage_model(module, str(tmp / "model"), log=lambda *_: None)
        export_s = time.perf_counter() - started
        runs = []
        for n, kind in enumerate(args.order):
            if kind == "B":  # each Beam run gets its own output folder, with the model already staged there
                shutil.copytree(model_uri, tmp / f"shards-{n}" / Path(model_uri).name)
            cpu = time.process_time()
            seconds, computed = (run_beam if kind == "B" else run_tool)(n)
            runs.append({"run": "beam" if kind == "B" else "tool", "seconds": round(seconds, 2),
                         "cpu_seconds": round(time.process_time() - cpu, 2), "computed": computed})
        tool_s = sum(r["seconds"] for r in runs if r["run"] == "tool")
        beam_s = sum(r["seconds"] for r in runs if r["run"] == "beam")
        last_beam = max(n for n, kind in enumerate(args.order) if kind == "B")
        shard_bytes = sum(f.stat().st_size for f in (tmp / f"shards-{last_beam}").glob("bottlenecks-*.parquet"))
        started = time.perf_counter()
        imported = BottleneckCache(tmp / "imported", module.identity, module.bottleneck_size)
        import_shards(imported, tmp / f"shards-{last_beam}", log=lambda *_: None)
        imported.close()
        import_s = time.perf_counter() - started

    images = len(paths)
    rate = {kind: images * sum(r["run"] == kind for r in runs) / seconds
            for kind, seconds in (("tool", tool_s), ("beam", beam_s))}
    cpu = {kind: sum(r["cpu_seconds"] for r in runs if r["run"] == kind) for kind in ("tool", "beam")}
    cpu_per_image = {kind: cpu[kind] / (images * sum(r["run"] == kind for r in runs)) for kind in cpu}
    result = {
        "machine": measured_on,
        "command": command(argv),
        "images": images,
        "runs": runs,
        "seconds": {"tool": round(tool_s, 2), "beam": round(beam_s, 2), "beam_one_off_export": round(export_s, 2)},
        "images_per_s": {kind: round(value, 2) for kind, value in rate.items()},
        "beam_over_tool": round(rate["beam"] / rate["tool"], 3),
        # CPU time of this process (all its threads) per image: what an image costs, whatever else the machine runs.
        "cpu_seconds_per_image": {kind: round(value, 4) for kind, value in cpu_per_image.items()},
        "beam_over_tool_by_cpu_time": round(cpu_per_image["tool"] / cpu_per_image["beam"], 3),
        "shard_bytes_per_image": round(shard_bytes / max(1, runs[last_beam]["computed"])),
        "import_into_cache_s": round(import_s, 2),
        "beam_runner": "DirectRunner, multi_threading, one worker thread per core",
        "note": "all runs in one process; the machine was shared with other jobs",
    }
    print(json.dumps(result, indent=1))
    if args.json:
        write_result(args.json, result, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
