#!/usr/bin/env python3
"""Which planted copies the duplicate checks find, in every class, and how many pairs of the set's own photos they flag.

    .venv/bin/python -m bench.near_duplicates --image_dir ../shared/datasets/flower_photos_dev \\
        --bottleneck_dir DIR [--photos 20] [--json bench/results/near-duplicates-MACHINE.json]

``--bottleneck_dir`` must hold the set's bottlenecks (one earlier retrain.py run, default settings); the photos'
perceptual fingerprints are kept there too.  In each class, ``--photos`` photos picked at random get a copy made
every way of ``WAYS``: resized to 50, 60, 70, 80 and 90 % and re-encoded at JPEG quality 60, 70, 80 and 90.  Each
copy's fingerprint and bottleneck (built-in Inception-v3) are computed, the originals plus one way's copies go
through the run's own search (duplicates.near_pairs with the fingerprints), and a copy counts as found when it is
paired with its original; the two rules are also counted alone (bottleneck margin, fingerprints).

False pairs: the originals alone go through the same search; every pair it flags is counted, per class (both
photos in the class, out of all pairs of that class's photos) and overall (out of all pairs of the set), for each
rule.  Every pair flagged by the fingerprints is listed with its bits, so that a reader can look at them: on
flower_photos_dev they are edits of one photograph (recoloured, greyed, cropped), which the rates still count.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data_checks_scale import real_bottlenecks
from bench.machine import command, machine, write_result
from bottleneck.data.images import load_for_model
from bottleneck.data.perceptual import fingerprint
from bottleneck.data_checks import copies, duplicates
from bottleneck.data_checks.all_images import AllImages

SCALES = (0.5, 0.6, 0.7, 0.8, 0.9)
QUALITIES = (60, 70, 80, 90)
WAYS = [(scale, quality) for scale in SCALES for quality in QUALITIES]
BATCH = 25  # copies through the network at a time


def copy_bytes(image: Image.Image, scale: float, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale)))).save(
        buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def distinct(images: AllImages) -> AllImages:
    """One row per content: the search looks at each content once."""
    first: dict[str, int] = {}
    for i, digest in enumerate(images.digests):
        first.setdefault(digest, i)
    rows = sorted(first.values())
    return AllImages(images.x[rows], images.y[rows], [images.paths[i] for i in rows], [images.sets[i] for i in rows],
                     [images.digests[i] for i in rows])


def pair_sets(images: AllImages, prints: dict) -> dict[str, set[tuple[int, int]]]:
    """Pairs (i < j) of rows flagged by the bottleneck rule, by the fingerprints, and by the run's search (both)."""
    by_bottleneck = {(i, j) for i, j, _s in duplicates.similar_vectors(images.x)[0]}
    codes = np.array([prints.get(d, (0, 0)) for d in images.digests], dtype=np.uint64)
    have = {i for i, d in enumerate(images.digests) if d in prints}
    by_prints = {(i, j) for i, j in copies.close_pairs(codes) if i in have and j in have}
    searched = {(p.a, p.b) for p in duplicates.near_pairs(images, prints)[0]}
    return {"bottleneck": by_bottleneck, "fingerprints": by_prints, "search": searched}


def false_pairs(originals: AllImages, labels: list[str], prints: dict) -> tuple[dict, list[dict]]:
    """Flagged pairs of the set's own photos, per class and overall, for each rule; and the fingerprint pairs."""
    flagged = pair_sets(originals, prints)
    n = len(originals.y)
    table = {}
    for c, label in enumerate(labels):
        members = int(np.sum(originals.y == c))
        total = members * (members - 1) // 2
        row = {"photos": members, "pairs": total}
        for rule, pairs in flagged.items():
            count = sum(1 for i, j in pairs if originals.y[i] == c and originals.y[j] == c)
            row[rule] = {"flagged": count, "rate": count / total if total else None}
        table[label] = row
    total = n * (n - 1) // 2
    table["across classes"] = {rule: {"flagged": sum(1 for i, j in pairs if originals.y[i] != originals.y[j])}
                               for rule, pairs in flagged.items()}
    table["overall"] = {"photos": n, "pairs": total,
                        **{rule: {"flagged": len(pairs), "rate": len(pairs) / total}
                           for rule, pairs in flagged.items()}}
    listed = []
    for i, j in sorted(flagged["fingerprints"]):
        a, b = prints[originals.digests[i]], prints[originals.digests[j]]
        listed.append({"a": originals.paths[i], "b": originals.paths[j],
                       "phash_bits": bin(a[0] ^ b[0]).count("1"), "dhash_bits": bin(a[1] ^ b[1]).count("1")})
    return table, listed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", type=Path, required=True)
    p.add_argument("--bottleneck_dir", type=Path, required=True)
    p.add_argument("--photos", type=int, default=20, help="photos copied per class")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    from bottleneck.model.inception_v3 import CLASSIC_TOP_BLOCK
    from bottleneck.model.modules import load_module
    from bottleneck.model.weights import default_model_dir

    measured_on = machine()
    started = time.perf_counter()
    images, labels = real_bottlenecks(args.image_dir, args.bottleneck_dir)
    originals = distinct(images)
    prints = copies.fingerprints(originals, args.bottleneck_dir)
    table, listed = false_pairs(originals, labels, prints)
    print(json.dumps(table["overall"]), flush=True)

    module = load_module("inception_v3", default_model_dir(), log=lambda _m: None, top_block=CLASSIC_TOP_BLOCK)
    rng = np.random.default_rng(2)
    members = [np.flatnonzero(originals.y == c) for c in range(len(labels))]
    picked = np.concatenate([rng.choice(rows, min(args.photos, len(rows)), replace=False) for rows in members])
    pictures = {}
    for i in picked:
        with Image.open(originals.paths[i]) as im:
            pictures[int(i)] = im.convert("RGB")
    found = {f"{int(s * 100)}% q{q}": {rule: {label: 0 for label in labels} for rule in ("search", "bottleneck",
                                                                                          "fingerprints")}
             for s, q in WAYS}
    missed = []
    bits = {"phash": [], "dhash": []}
    for scale, quality in WAYS:
        way = f"{int(scale * 100)}% q{quality}"
        data = [copy_bytes(pictures[int(i)], scale, quality) for i in picked]
        copy_prints = [fingerprint(d) for d in data]
        pixels = np.stack([load_for_model(d, module.height, module.width) for d in data])
        vectors = np.concatenate([module.features(pixels[s:s + BATCH]).numpy() for s in range(0, len(data), BATCH)])
        n = len(originals.y)
        combined = AllImages(np.vstack([originals.x, vectors]), np.concatenate([originals.y, originals.y[picked]]),
                             originals.paths + [f"{originals.paths[i]} ({way})" for i in picked],
                             originals.sets + ["training"] * len(picked),
                             originals.digests + [f"copy-{k}" for k in range(len(picked))])
        all_prints = {**prints, **{f"copy-{k}": fp for k, fp in enumerate(copy_prints)}}
        flagged = pair_sets(combined, all_prints)
        for k, i in enumerate(picked):
            label = labels[originals.y[i]]
            for rule, pairs in flagged.items():
                found[way][rule][label] += (int(i), n + k) in pairs
            if (int(i), n + k) not in flagged["search"]:
                missed.append({"way": way, "photo": originals.paths[i]})
            own = prints.get(originals.digests[i])
            if own is not None:
                bits["phash"].append(bin(own[0] ^ copy_prints[k][0]).count("1"))
                bits["dhash"].append(bin(own[1] ^ copy_prints[k][1]).count("1"))
        print(f"{way}: {sum(found[way]['search'].values())}/{len(picked)} found "
              f"(bottleneck rule {sum(found[way]['bottleneck'].values())}, "
              f"fingerprints {sum(found[way]['fingerprints'].values())})", flush=True)
    copies_made = len(picked) * len(WAYS)
    results = {
        "command": command(argv), "machine": measured_on, "seconds": round(time.perf_counter() - started, 1),
        "images": len(originals.y), "classes": labels, "photos_copied_per_class": args.photos,
        "ways": [f"{int(s * 100)}% q{q}" for s, q in WAYS], "copies": copies_made,
        "found": {"search": copies_made - len(missed),
                  "bottleneck_rule_alone": sum(sum(f["bottleneck"].values()) for f in found.values()),
                  "fingerprints_alone": sum(sum(f["fingerprints"].values()) for f in found.values())},
        "missed": missed, "found_per_way_and_class": found,
        "copy_bits_max": {k: max(v) for k, v in bits.items()},
        "false_pairs": table, "fingerprint_pairs_among_originals": listed,
        "rule": {"min_similarity": duplicates.NEAR_MIN_SIMILARITY, "margin": duplicates.NEAR_MARGIN,
                 **copies.copy_rule()},
    }
    print(json.dumps({k: results[k] for k in ("copies", "found", "copy_bits_max")}, indent=2))
    print(json.dumps(table, indent=2))
    if args.json:
        write_result(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
