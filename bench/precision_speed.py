"""How fast does each --precision run the network, and does decoding keep up?  One process, ratios.

    .venv/bin/python -m bench.precision_speed [--image_dir ../shared/datasets/flower_photos_dev] \
        [--model_dir DIR] [--images 256] [--json out.json]

Measured in this one process, on the built-in Inception-v3 (classic pool_3), batch 32:

1. the network's own rate (pre-decoded images, warm) at float32, bfloat16 and int8,
   and how far each one's vectors are from float32's (cosine per image, max abs);
2. decoding: time per image to decode and resize, on one thread and on a pool of
   one thread per core, and the share of the cores it takes at each precision's rate;
3. bottleneck creation (extract.compute_missing into a fresh cache, decoding
   included) at each precision, as a ratio of its own network rate and of float32's;
4. label_image.py's path: the frozen graph that retrain.py exports, run at
   float32 and bfloat16, to check that the bfloat16 rewrite reaches it.

A whole cold retrain.py against its network alone is python -m bench.cold_retrain.

bfloat16 is forced for the figures of 1-4 (emulated on a processor without it).
Everything is written into a temporary folder that is removed at the end.
"""
from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, machine, rate_of, write_result

REPO = Path(__file__).resolve().parent.parent

BATCH = 32
ROUNDS = 2
PRECISIONS = ("float32", "bfloat16", "int8")


def cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--model_dir", default=None)
    p.add_argument("--images", type=int, default=256, help="images for bottleneck creation at each precision")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    logging.getLogger("retrain").setLevel(logging.WARNING)

    from bottleneck.cache.store import BottleneckCache, Entry
    from bottleneck.data.images import load_for_model
    from bottleneck.data.walk import list_images
    from bottleneck.export.outputs import write_frozen_graph
    from bottleneck.extraction.batches import Job, compute_missing
    from bottleneck.label_image.engine import load_graph
    from bottleneck.model.modules import BUILTIN_MODULE, load_module
    from bottleneck.model.precision import choose
    from bottleneck.model.runner import graph_runner, runner, with_precision
    from bottleneck.model.weights import default_model_dir

    model_dir = Path(args.model_dir) if args.model_dir else default_model_dir()
    listing = list_images(args.image_dir)
    all_paths = [im.path for c in listing.classes for im in c.images]
    # Every class represented: take the images evenly spread over the sorted listing.
    pick = np.unique(np.linspace(0, len(all_paths) - 1, args.images).round().astype(int))
    paths = [all_paths[i] for i in pick]
    forced = {name: choose(name, flags=frozenset({"avx512_bf16"}), gpus=[]) for name in PRECISIONS}
    module = load_module(BUILTIN_MODULE, model_dir)
    result = {"command": command(), "machine": machine(), "image_dir": args.image_dir, "batch": BATCH, "figures": {}}
    figures = result["figures"]

    def say(text):
        print(text, flush=True)

    # 1. the network alone
    decoded = np.stack([load_for_model(path, module.height, module.width) for path in paths[:96]])
    batches = [decoded[i:i + BATCH] for i in range(0, len(decoded), BATCH)]
    runs = {name: runner(with_precision(module, forced[name]), forced[name], model_dir, devices=[])
            for name in PRECISIONS}
    network, network_cpu, outputs = {name: 0.0 for name in PRECISIONS}, {name: np.inf for name in PRECISIONS}, {}
    for _round in range(ROUNDS):  # interleaved, the best of each: other load on the machine only slows a round
        for name in PRECISIONS:  # int8's quantization (once per model dir) happened in runner(), before timing
            rate, cpu = rate_of(runs[name], batches)
            network[name], network_cpu[name] = max(network[name], rate), min(network_cpu[name], cpu)
    for name in PRECISIONS:
        outputs[name] = np.concatenate([np.asarray(runs[name](b)) for b in batches])
    for name in PRECISIONS:
        c = cosine(outputs[name], outputs["float32"])
        figures[f"network_{name}"] = {
            "images_per_s": network[name], "x_float32": network[name] / network["float32"],
            "cpu_s_per_image": network_cpu[name], "x_float32_by_cpu_time": network_cpu["float32"] / network_cpu[name],
            "cosine_to_float32_min": float(c.min()), "cosine_to_float32_mean": float(c.mean()),
            "max_abs_difference": float(np.abs(outputs[name] - outputs["float32"]).max())}
        say(f"1. network {name:9} {network[name]:6.1f} images/s = {network[name] / network['float32']:.2f} x float32 "
            f"({network_cpu[name] * 1e3:.0f} CPU ms/image = {network_cpu['float32'] / network_cpu[name]:.2f} x);"
            f" cosine to float32 min {c.min():.5f}, max abs {np.abs(outputs[name] - outputs['float32']).max():.4f}")

    # 2. decoding
    sample = paths[:128]
    cores = os.cpu_count() or 1

    def load(path):
        return load_for_model(path, module.height, module.width)

    one, one_cpu, pooled = np.inf, np.inf, np.inf
    with ThreadPoolExecutor(max_workers=max(2, cores)) as pool:
        for _round in range(3):  # interleaved, the best of each
            started, cpu = time.perf_counter(), time.process_time()
            for path in sample:
                load(path)
            one = min(one, (time.perf_counter() - started) / len(sample))
            one_cpu = min(one_cpu, (time.process_time() - cpu) / len(sample))
            started = time.perf_counter()
            list(pool.map(load, sample))
            pooled = min(pooled, (time.perf_counter() - started) / len(sample))
    figures["decoding"] = {"ms_per_image_one_thread": one * 1e3, "cpu_ms_per_image": one_cpu * 1e3,
                           "ms_per_image_thread_pool": pooled * 1e3, "pool_speedup": one / pooled,
                           "pool_threads": max(2, cores),
                           "core_share_at": {name: one_cpu * network[name] / cores for name in PRECISIONS},
                           "of_network_cpu_time": {name: one_cpu / network_cpu[name] for name in PRECISIONS}}
    say(f"2. decoding + resizing: {one * 1e3:.2f} ms/image on one thread ({one_cpu * 1e3:.2f} ms CPU), "
        f"{pooled * 1e3:.2f} ms/image on {max(2, cores)} threads ({one / pooled:.2f}x); share of the cores at each "
        "network rate: " + ", ".join(f"{name} {one_cpu * network[name] / cores:.0%}" for name in PRECISIONS)
        + "; CPU time against the network's: "
        + ", ".join(f"{name} {one_cpu / network_cpu[name]:.1%}" for name in PRECISIONS))

    # 3. bottleneck creation, decoding included
    with tempfile.TemporaryDirectory(prefix="precision-bench-") as tmp:
        for name in PRECISIONS:
            precision_module = with_precision(module, forced[name])
            cache = BottleneckCache(Path(tmp) / "bottlenecks", precision_module.identity, module.bottleneck_size)
            try:
                digest_of, _ = cache.digests(paths)
                jobs = [Job(Entry(digest_of[path]), path) for path in paths]
                started, cpu = time.perf_counter(), time.process_time()
                skipped = compute_missing(precision_module, jobs, cache, BATCH, features=runs[name])
                rate = len(jobs) / (time.perf_counter() - started)
                cpu = (time.process_time() - cpu) / len(jobs)
            finally:
                cache.close()
            figures[f"creation_{name}"] = {"images": len(jobs), "skipped": len(skipped), "images_per_s": rate,
                                           "of_own_network": rate / network[name],
                                           "x_float32_network": rate / network["float32"],
                                           "cpu_s_per_image": cpu,
                                           "of_own_network_by_cpu_time": network_cpu[name] / cpu,
                                           "x_float32_network_by_cpu_time": network_cpu["float32"] / cpu}
            say(f"3. bottleneck creation {name:9} {rate:6.1f} images/s = {rate / network[name]:.2f} of its own "
                f"network, {rate / network['float32']:.2f} x float32's network ({len(jobs)} images); by CPU time "
                f"{network_cpu[name] / cpu:.2f} of its own network, {network_cpu['float32'] / cpu:.2f} x float32's")

        # 4. label_image.py's frozen graph
        rng = np.random.default_rng(0)
        graph_path = Path(tmp) / "graph.pb"
        write_frozen_graph(graph_path, module, rng.normal(0, 0.01, (module.bottleneck_size, 5)).astype(np.float32),
                           np.zeros(5, np.float32), "final_result")
        classifier = load_graph(graph_path)
        graph_rates, graph_out = {}, {}
        for name in ("float32", "bfloat16"):
            run = graph_runner(classifier, forced[name], devices=[])
            graph_rates[name] = rate_of(run, batches[:2])[0]
            graph_out[name] = run(batches[0])
        c = cosine(graph_out["bfloat16"], graph_out["float32"])
        figures["frozen_graph"] = {"float32_images_per_s": graph_rates["float32"],
                                   "bfloat16_images_per_s": graph_rates["bfloat16"],
                                   "bfloat16_x_float32": graph_rates["bfloat16"] / graph_rates["float32"],
                                   "score_cosine_min": float(c.min())}
        say(f"4. frozen graph (label_image.py): float32 {graph_rates['float32']:.1f}, bfloat16 "
            f"{graph_rates['bfloat16']:.1f} images/s ({graph_rates['bfloat16'] / graph_rates['float32']:.2f}x)")

    if args.json:
        write_result(args.json, result)


if __name__ == "__main__":
    main()
