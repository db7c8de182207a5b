"""The bottleneck phase of a run: make sure every image has its vector in the cache.

Step by step, each a function below:

0. ``import_new_shards``: vectors computed elsewhere by the Beam pipeline
   (``beam_bottlenecks.py``) come into the cache first; an image whose
   content the pipeline found undecodable is skipped, not tried again.
1. ``hash_images``: the content digest of every image; a file that cannot be
   read is skipped.  The cache is keyed by content, so a renamed or copied
   photo is never computed twice.
2. ``warn_cross_class_duplicates``: the same photo in two classes teaches the
   layer a contradiction, so it is reported.
3. ``import_classic_files``: bottlenecks that the classic script left as text
   files are taken in instead of computed again.
4. ``distorted_copy_jobs``: the distorted copies of training images that the
   distortion flags ask for.
5. ``compute``: run the network over everything still missing, and book the
   images it could not decode as skipped, with every file of the same content.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..cache.classic import import_classic_text
from ..cache.shards import default_folder, import_shards, undecodable
from ..cache.store import BottleneckCache, Entry
from ..config.settings import BottleneckSettings
from ..console.notes import bounded
from ..console.progress import Progress
from ..data.decoding import PROCESSES, choose_workers
from ..data.names import one_line
from ..data.split import ClassSplit
from ..data.walk import ImageClass, ImageFile
from ..model.modules import FeatureModule
from ..model.precision import precision_here
from ..model.runner import device_count, runner
from .activations import extraction_fn
from .batches import Job, Skipped, compute_missing

log = logging.getLogger("retrain")


@dataclass
class CachedImages:
    digest_of: dict[Path, str]  # content digest of every readable image, by path
    skipped: list[Skipped]  # images that could not be used, with the reason


def ensure(settings: BottleneckSettings, module: FeatureModule, cache: BottleneckCache, classes: list[ImageClass],
           splits: list[ClassSplit], activations: BottleneckCache | None = None, tuned_blocks: int = 0,
           show_progress: bool = True) -> CachedImages:
    """Make sure every image has a cached bottleneck.

    For fine-tuning, every image also needs its ``activations`` at the cut below
    the ``tuned_blocks`` top blocks; one forward pass fills both caches.
    """
    import_new_shards(settings, cache)
    found_undecodable = undecodable(shard_folder(settings))  # by the Beam pipeline
    first_class: dict[Path, tuple[ImageFile, str]] = {}  # each file once: a multi-label image is in several classes
    for c in classes:
        for im in c.images:
            first_class.setdefault(im.path, (im, c.folder.name))
    images = list(first_class.values())
    digest_of, skipped = hash_images(cache, [im for im, _folder in images])
    readable = [(im, folder, digest_of[im.path]) for im, folder in images if im.path in digest_of]
    warn_cross_class_duplicates(readable)
    first_of: dict[str, tuple[ImageFile, str]] = {}  # one image of each content
    for image, folder, digest in readable:
        first_of.setdefault(digest, (image, folder))

    present = cache.present([Entry(d) for d in first_of])
    missing = {d: place for d, place in first_of.items() if Entry(d) not in present}
    imported = import_classic_files(settings.bottleneck_dir, module, cache, missing) if missing else 0
    stores = [cache] if activations is None else [cache, activations]
    absent = absent_from(stores, [Entry(d) for d in first_of])
    passed_over = {e.digest for e in absent if e.digest in found_undecodable}
    jobs = [Job(e, first_of[e.digest][0].path) for e in absent if e.digest not in passed_over]
    log.info("%d bottlenecks cached, %d imported, %d to compute.", len(first_of) - len(missing), imported, len(jobs))
    if passed_over:
        skipped += [Skipped(im.path, found_undecodable[d]) for im, _folder, d in readable if d in passed_over]
        log.info("%d image(s) that the Beam pipeline could not decode are skipped without being tried again.",
                 len(passed_over))
    if settings.distortion.active:
        jobs += distorted_copy_jobs(settings, stores, splits,
                                    {path: d for path, d in digest_of.items() if d not in passed_over})
    if jobs:
        skipped += compute(settings, module, stores, jobs, tuned_blocks, show_progress, readable)
    lines = [f"Skipping {one_line(s.path)}: {s.reason}" for s in skipped]
    for line in bounded(lines, "unreadable images (all listed in the report's summary.json)"):
        log.warning(line)
    return CachedImages(digest_of, skipped)


def hash_images(cache: BottleneckCache, images: list[ImageFile]) -> tuple[dict[Path, str], list[Skipped]]:
    """The content digest of every image, and the images whose file could not be read."""
    digest_of, unreadable = cache.digests([im.path for im in images])
    return digest_of, [Skipped(path, reason) for path, reason in unreadable.items()]


def warn_cross_class_duplicates(readable: list[tuple[ImageFile, str, str]]) -> None:
    classes_of: dict[str, set[str]] = {}
    paths_of: dict[str, list[str]] = {}
    for image, folder, digest in readable:
        classes_of.setdefault(digest, set()).add(folder)
        paths_of.setdefault(digest, []).append(one_line(image.path))
    lines = [f"The same image is in several classes ({', '.join(sorted(one_line(f) for f in folders))}): "
             f"{'; '.join(paths_of[digest])}"
             for digest, folders in classes_of.items() if len(folders) > 1]
    for line in bounded(lines, "images that are in several classes"):
        log.warning(line)


def shard_folder(settings: BottleneckSettings):
    """Where the Beam pipeline's shards and skipped records are: --bottleneck_shards, or the cache's own folder."""
    return settings.bottleneck_shards or default_folder(settings.bottleneck_dir)


def import_new_shards(settings: BottleneckSettings, cache: BottleneckCache) -> int:
    """Take in the bottleneck shards that a Beam pipeline wrote and this cache has not imported yet."""
    return import_shards(cache, shard_folder(settings), log.info, required=settings.bottleneck_shards is not None,
                         warn=log.warning)


def import_classic_files(bottleneck_dir: Path, module: FeatureModule, cache: BottleneckCache,
                         missing: dict[str, tuple[ImageFile, str]]) -> int:
    """Take in the classic script's ``<class>/<image>_<module>.txt`` files for the ``missing`` contents."""
    if not module.classic_cache_suffixes:
        return 0
    candidates = [
        (Entry(d), [bottleneck_dir / folder / f"{image.name}_{suffix}.txt" for suffix in module.classic_cache_suffixes])
        for d, (image, folder) in missing.items()
    ]
    imported = import_classic_text(cache, candidates)
    if imported:
        log.info("Imported %d bottlenecks from the classic script's text files.", imported)
    return imported


def absent_from(stores: list[BottleneckCache], entries: list[Entry]) -> list[Entry]:
    """The entries that some store lacks, in their order."""
    present = set(entries)
    for store in stores:
        present &= store.present(entries)
    return [e for e in entries if e not in present]


def distorted_copy_jobs(settings: BottleneckSettings, stores: list[BottleneckCache], splits: list[ClassSplit],
                        digest_of: dict[Path, str]) -> list[Job]:
    """Jobs for the distorted copies of training images (never of validation or test images) not yet cached."""
    distortion = settings.distortion
    training = {digest_of[im.path]: im.path for sp in splits for im in sp.training if im.path in digest_of}
    wanted = {Entry(d, distortion.variant(c)): (path, c) for d, path in training.items()
              for c in range(settings.distorted_copies)}
    jobs = [Job(e, *wanted[e]) for e in absent_from(stores, list(wanted))]
    log.info("%d distorted copies cached, %d to compute (%d per training image).",
             len(wanted) - len(jobs), len(jobs), settings.distorted_copies)
    return jobs


def compute(settings: BottleneckSettings, module: FeatureModule, stores: list[BottleneckCache], jobs: list[Job],
            tuned_blocks: int, show_progress: bool, readable: list[tuple[ImageFile, str, str]]) -> list[Skipped]:
    """Run the network over ``jobs``; returns every readable image whose content could not be decoded."""
    started = time.perf_counter()
    features = None
    if len(stores) > 1:  # the activations at the cut come from the same forward pass
        features = extraction_fn(module, tuned_blocks)
    # The precision the run logged at its start (precision_here() gives the same answer again); each GPU gets a
    # full batch.
    features = runner(module, precision_here(settings.precision), settings.model_dir, features)
    workers = choose_workers(settings.decode_workers, len(jobs))
    if workers.kind == PROCESSES:  # threads are what a run has always used; processes are worth a line
        log.info("Decoding on %d worker processes (%s).", workers.count, workers.why)
    with Progress(len(jobs), "Bottlenecks", enabled=show_progress) as bar:
        bad = compute_missing(module, jobs, stores, settings.extraction_batch_size * device_count(), bar.update,
                              features=features, distortion=settings.distortion, workers=workers)
    rate = len(jobs) / (time.perf_counter() - started)
    log.info("%d bottlenecks created (%.1f images/s).", len(jobs) - len(bad), rate)
    bad = list({s.path: s for s in bad}.values())  # a failed distorted copy means its image failed
    # Every file with the same bad content is skipped too, not only the one that was decoded.
    digest_of = {im.path: d for im, _f, d in readable}
    reason_of = {digest_of[s.path]: s.reason for s in bad}
    return [Skipped(im.path, reason_of[d]) for im, _f, d in readable if d in reason_of]
