"""Bottleneck creation: the local Beam pipeline against the tool's own extraction, on one machine, in one run.

    .venv/bin/python bench/beam_vs_local.py --image_dir /path/to/flower_photos_dev [--json bench/results/x.json]

Both start from an empty cache and compute every image's bottleneck with the
built-in Inception-v3 (float32), including hashing the files:
  tool: cache.digests + extract.compute_missing (what retrain.py does);
  beam: bottleneck.beam_bottlenecks.create_bottlenecks on the DirectRunner defaults
        (start-up, listing, hashing, decoding, RunInference, Parquet shards), with the
        feature extractor already exported (a one-off per module, timed apart).
The module is loaded once, before both.  The figure of merit is beam rate / tool rate.
Also measured: the shards' size per image and the time to import them into a new cache.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS_OF_INTEREST = ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")


def machine() -> dict:
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {"cpu": fields.get("Model name", "").strip(), "cpus": int(fields.get("CPU(s)", "0").strip() or 0),
            "flags": {f: f in flags for f in FLAGS_OF_INTEREST}, "python": platform.python_version()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image_dir", required=True)
    p.add_argument("--model_dir", default=None)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--json", default=None, help="Also write the figures to this file.")
    args = p.parse_args(argv)

    from bottleneck.beam_bottlenecks import create_bottlenecks, stage_model
    from bottleneck.cache import BottleneckCache, Entry
    from bottleneck.cli import quiet_tensorflow
    from bottleneck.extract import Job, compute_missing
    from bottleneck.inception_v3 import default_model_dir
    from bottleneck.modules import load_module
    from bottleneck.shards import import_shards
    from bottleneck.walk import list_images

    quiet_tensorflow("WARN")
    module = load_module("inception_v3", Path(args.model_dir) if args.model_dir else default_model_dir(),
                         log=lambda *_: None)
    paths = [im.path for c in list_images(args.image_dir).classes for im in c.images]
    with tempfile.TemporaryDirectory(prefix="bench-beam-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        cache = BottleneckCache(tmp / "tool", module.identity, module.bottleneck_size)
        digest_of, _unreadable = cache.digests(paths)
        first = {}
        for path in paths:
            first.setdefault(digest_of[path], path)
        skipped = compute_missing(module, [Job(Entry(d), p) for d, p in first.items()], cache, args.batch_size)
        tool_s = time.perf_counter() - started
        cache.close()

        started = time.perf_counter()
        stage_model(module, str(tmp / "shards"), log=lambda *_: None)
        export_s = time.perf_counter() - started
        started = time.perf_counter()
        outcome = create_bottlenecks(args.image_dir, tmp / "shards", module, None, args.batch_size,
                                     log=lambda *_: None)
        beam_s = time.perf_counter() - started
        shard_bytes = sum(f.stat().st_size for f in (tmp / "shards").glob("bottlenecks-*.parquet"))
        started = time.perf_counter()
        imported = BottleneckCache(tmp / "imported", module.identity, module.bottleneck_size)
        import_shards(imported, tmp / "shards", log=lambda *_: None)
        imported.close()
        import_s = time.perf_counter() - started

    images = len(paths)
    result = {
        "machine": machine(),
        "command": "python bench/beam_vs_local.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "images": images,
        "computed": {"tool": len(first) - len(skipped), "beam": outcome.computed},
        "seconds": {"tool": round(tool_s, 2), "beam": round(beam_s, 2), "beam_one_off_export": round(export_s, 2)},
        "images_per_s": {"tool": round(images / tool_s, 2), "beam": round(images / beam_s, 2)},
        "beam_over_tool": round(tool_s / beam_s, 3),
        "shard_bytes_per_image": round(shard_bytes / max(1, outcome.computed)),
        "import_into_cache_s": round(import_s, 2),
        "beam_runner": "DirectRunner, multi_threading, one worker thread per core",
        "note": "one run each, in one process; the machine was shared with other jobs",
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
