"""Know your data: suspected label errors, duplicates and leakage, from the cached bottlenecks.

* Suspected label errors: every image (training, validation and test) gets a
  prediction from a new layer trained on the other folds (k-fold, out of fold),
  so no image is judged by a layer that saw it.  Images whose folder label that
  layer disputes are ranked by how much more probable it finds its own answer
  than the folder label.  Copies with the same content always share a fold, or
  a copy would vouch for itself.
* Exact duplicates: the same content digest under two paths.
* Near-duplicates: resized, re-encoded or lightly cropped copies, found as
  bottlenecks that are far more similar to each other than to any other image.
  The search uses faiss: an exact flat inner-product index up to
  ``EXACT_SEARCH_LIMIT`` distinct images; above that, candidates from an
  inverted-file index over a PCA projection, which compares each image only with
  the vectors of its ``IVF_PROBES`` closest clusters (copies sit next to each
  other, so they share a cluster), then scored exactly: an all-pairs search over
  200,000 images would take hours on a laptop.
* Leakage: a test (or validation) image with an exact or near copy in another
  set; its accuracy then measures memory, not generalisation.

The new layer here is trained in NumPy like ``train.py`` (class-balanced
batches, Adam), with a fixed number of steps per fold, so the cost does not grow
with the number of images beyond one prediction per image.
"""
from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..config.settings import TrainSettings
from ..data.split import SETS
from ..training.layer import _optimizer, _softmax, _truncated_normal, balanced_sampler

log = logging.getLogger("retrain")

FOLDS = 5
FOLD_STEPS = 200  # per fold, class-balanced batches of FOLD_BATCH
FOLD_BATCH = 100
FOLD_LEARNING_RATE = 0.003
# A near-duplicate pair: cosine similarity of the bottlenecks at least NEAR_MIN_SIMILARITY and
# NEAR_MARGIN above either image's similarity to any third image (see similar_vectors).  A
# fixed threshold alone cannot work: a resized copy of a small photo can score lower than two
# different photos of a dense class.
NEAR_MIN_SIMILARITY = 0.85
NEAR_MARGIN = 0.05
NEIGHBOURS = 3  # itself, the nearest other image, and the next one as the neighbourhood
EXACT_SEARCH_LIMIT = 10_000  # distinct images; above, an approximate (inverted-file) index
IVF_PROBES = 16
PCA_DIMS = 128  # the approximate search's candidates are found in this many dimensions
CANDIDATES = 10  # per image, scored exactly on the full vectors
LABEL_ERRORS_CSV = "suspected_label_errors.csv"
DUPLICATES_CSV = "duplicates.csv"
SUMMARY_TOP = 20  # suspected label errors listed in summary.json itself


@dataclass
class AllImages:
    """One row per readable image of every set, with its plain (undistorted) bottleneck."""

    x: np.ndarray  # [N, D]
    y: np.ndarray  # [N] class index of the folder
    paths: list[str]
    sets: list[str]  # "training", "validation" or "testing"
    digests: list[str]

    @classmethod
    def from_sets(cls, sets: dict, digest_of: dict) -> AllImages:
        """From pipeline.load_sets' plain SplitData per set and the digest of each path."""
        by_name = {str(path): digest for path, digest in digest_of.items()}
        xs, ys, paths, set_names = [], [], [], []
        for name in SETS:
            data = sets[name]
            xs.append(data.x)
            ys.append(data.y)
            paths += list(data.names)
            set_names += [name] * len(data.y)
        x = np.concatenate(xs) if xs else np.zeros((0, 0), np.float32)
        return cls(x, np.concatenate(ys).astype(np.int64), paths, set_names, [by_name[p] for p in paths])


@dataclass
class LabelError:
    path: str
    set: str
    label: str
    suggested: str
    label_probability: float
    suggested_probability: float

    @property
    def margin(self) -> float:
        return self.suggested_probability - self.label_probability


@dataclass
class DuplicatePair:
    kind: str  # "exact" or "near"
    similarity: float
    a: int  # row indices into AllImages
    b: int


@dataclass
class Findings:
    labels: list[str]
    images: AllImages
    out_of_fold: np.ndarray | None  # [N, C] probabilities, None when not enough images per class
    label_errors: list[LabelError]  # ranked, most confidently disputed first
    pairs: list[DuplicatePair]  # exact pairs, and near pairs crossing sets or classes
    leaked_test: list[str] = field(default_factory=list)  # test images with a copy in training or validation
    leaked_validation: list[str] = field(default_factory=list)  # validation images with a copy in training
    index: str = ""  # which similarity index was used
    folds: int = 0  # of the out-of-fold predictions (fewer than FOLDS when a class has fewer images)
    seconds: float = 0.0
    note: str = ""

    def crosses(self, pair: DuplicatePair) -> tuple[bool, bool]:
        im = self.images
        return im.sets[pair.a] != im.sets[pair.b], bool(im.y[pair.a] != im.y[pair.b])

    def reported_pairs(self) -> list[DuplicatePair]:
        """The pairs the page and the CSV list: those crossing sets or classes."""
        return [p for p in self.pairs if any(self.crosses(p))]


# ---------------------------------------------------------------------------------------------
# Suspected label errors


def assign_folds(y: np.ndarray, digests: list[str], folds: int, seed: int) -> np.ndarray:
    """A fold per image, stratified by class; images with the same content share a fold."""
    rng = np.random.default_rng(seed)
    fold = np.full(len(y), -1, np.int64)
    fold_of_digest: dict[str, int] = {}
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        rows = rows[rng.permutation(len(rows))]
        next_fold = int(rng.integers(folds))
        for r in rows:
            d = digests[r]
            if d not in fold_of_digest:
                fold_of_digest[d] = next_fold
                next_fold = (next_fold + 1) % folds
            fold[r] = fold_of_digest[d]
    return fold


def fit_layer(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int, steps: int = FOLD_STEPS,
              batch: int = FOLD_BATCH, learning_rate: float = FOLD_LEARNING_RATE):
    """A softmax layer trained as train.py trains it (balanced batches, here Adam); returns (weights, biases)."""
    rng = np.random.default_rng(seed)
    weights = _truncated_normal(rng, (x.shape[1], num_classes), 0.001)
    biases = np.zeros(num_classes, np.float32)
    update = _optimizer(TrainSettings(optimizer="adam", learning_rate=learning_rate), [weights, biases])
    sample = balanced_sampler(y, num_classes, rng)
    eye = np.eye(num_classes, dtype=np.float32)
    for step in range(steps):
        rows = sample(batch)
        xb = x[rows].astype(np.float32, copy=False)
        delta = (_softmax(xb @ weights + biases) - eye[y[rows]]) / len(rows)
        update([xb.T @ delta, delta.sum(axis=0)], step)
    return weights, biases


def out_of_fold(images: AllImages, num_classes: int, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """[N, C] probabilities of each image from a layer trained on the other folds."""
    from threadpoolctl import threadpool_limits

    fold = assign_folds(images.y, images.digests, folds, seed)
    out = np.zeros((len(images.y), num_classes), np.float32)
    with threadpool_limits(limits=1, user_api="blas"):  # tiny products: threads only add waiting
        for k in range(folds):
            held = fold == k
            if not held.any():
                continue
            weights, biases = fit_layer(images.x[~held], images.y[~held], num_classes, seed + k)
            for start in range(0, int(held.sum()), 4096):
                rows = np.flatnonzero(held)[start:start + 4096]
                out[rows] = _softmax(images.x[rows].astype(np.float32) @ weights + biases)
    return out


def rank_label_errors(images: AllImages, probabilities: np.ndarray, labels: list[str]) -> list[LabelError]:
    """Images whose out-of-fold prediction is not their folder label, most confidently disputed first."""
    n = len(images.y)
    suggested = probabilities.argmax(axis=1)
    rows = np.arange(n)
    p_label = probabilities[rows, images.y]
    p_suggested = probabilities[rows, suggested]
    disputed = np.flatnonzero(suggested != images.y)
    order = disputed[np.argsort(-(p_suggested[disputed] - p_label[disputed]), kind="stable")]
    return [LabelError(images.paths[i], images.sets[i], labels[images.y[i]], labels[suggested[i]],
                       float(p_label[i]), float(p_suggested[i])) for i in order]


# ---------------------------------------------------------------------------------------------
# Duplicates


def exact_pairs(images: AllImages) -> list[DuplicatePair]:
    """Each copy paired with the first image of its content (so 1,000 copies give 999 pairs, not 499,500)."""
    first: dict[str, int] = {}
    pairs = []
    for i, d in enumerate(images.digests):
        if d in first:
            pairs.append(DuplicatePair("exact", 1.0, first[d], i))
        else:
            first[d] = i
    return pairs


def similar_vectors(x: np.ndarray, min_similarity: float = NEAR_MIN_SIMILARITY, margin: float = NEAR_MARGIN,
                    exact_limit: int = EXACT_SEARCH_LIMIT, seed: int = 0) -> tuple[list[tuple[int, int, float]], str]:
    """Pairs (i < j) of rows of ``x`` that are each other's copy, and the index used.

    A pair qualifies when its cosine similarity is at least ``min_similarity`` and exceeds, by ``margin``,
    the similarity of either image to any third image: a copy stands out from its neighbourhood, while
    two different photos of one dense class do not.
    """
    import faiss

    n, dim = x.shape
    if n < 2:
        return [], "none"
    vectors = np.ascontiguousarray(x, dtype=np.float32)
    faiss.normalize_L2(vectors)
    k = min(NEIGHBOURS, n)
    if n <= exact_limit:
        index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        sims = np.full((n, k), -1.0, np.float32)
        ids = np.full((n, k), -1, np.int64)
        for start in range(0, n, 8192):
            sims[start:start + 8192], ids[start:start + 8192] = index.search(vectors[start:start + 8192], k)
        return _margin_pairs(sims, ids, min_similarity, margin), "exact (faiss IndexFlatIP)"
    sims, ids, name = _approximate_neighbours(vectors, k, seed)
    return _margin_pairs(sims, ids, min_similarity, margin), name


def _approximate_neighbours(vectors: np.ndarray, k: int, seed: int):
    """The k nearest neighbours of each row, found approximately, with exact similarities.

    Candidates come from an inverted-file index over a PCA_DIMS-dimensional projection (the search
    costs a sixteenth of the full vectors' and a copy stays next to its original there too); the
    CANDIDATES best of each row are then scored exactly on the full vectors, so the margin rule sees
    the same numbers as in the exact search.
    """
    import faiss

    n, dim = vectors.shape
    rng = np.random.default_rng(seed)
    lists = int(np.sqrt(n))  # faiss's rule of thumb, with 40 training vectors per list
    sample = vectors[np.sort(rng.choice(n, min(n, lists * 40), replace=False))]
    reduced_dim = min(PCA_DIMS, dim)
    # The top principal axes by a few power iterations: faiss.PCAMatrix and a full eigendecomposition
    # of the 2048 x 2048 covariance each took most of the search's time.
    mean = sample.mean(axis=0)
    centred = sample - mean
    covariance = (centred.T @ centred).astype(np.float64)
    basis = rng.normal(size=(dim, reduced_dim + 10))
    for _ in range(4):
        basis, _r = np.linalg.qr(covariance @ basis)
    _values, small = np.linalg.eigh(basis.T @ covariance @ basis)
    projection = np.ascontiguousarray((basis @ small)[:, ::-1][:, :reduced_dim], dtype=np.float32)
    reduced = np.concatenate([(vectors[s:s + 8192] - mean) @ projection for s in range(0, n, 8192)])
    faiss.normalize_L2(reduced)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(reduced_dim), reduced_dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.train(reduced[np.sort(rng.choice(n, min(n, lists * 40), replace=False))])
    index.add(reduced)
    index.nprobe = IVF_PROBES
    candidates = min(CANDIDATES, n)
    sims = np.full((n, k), -1.0, np.float32)
    ids = np.full((n, k), -1, np.int64)
    for start in range(0, n, 2048):
        _approx, found = index.search(reduced[start:start + 2048], candidates)
        rows = np.arange(start, start + len(found))
        exact = np.einsum("id,icd->ic", vectors[rows], vectors[np.maximum(found, 0)])
        exact[found < 0] = -1.0
        order = np.argsort(-exact, axis=1)[:, :k]
        sims[rows] = np.take_along_axis(exact, order, axis=1)
        ids[rows] = np.take_along_axis(found, order, axis=1)
    name = (f"approximate (faiss IndexIVFFlat over a {reduced_dim}-dimensional PCA, {lists} lists, {IVF_PROBES} "
            f"probed, {candidates} candidates scored exactly)")
    return sims, ids, name


def _margin_pairs(sims: np.ndarray, ids: np.ndarray, min_similarity: float, margin: float):
    """Pairs (i < j, similarity) where j is i's nearest neighbour and they stand out by ``margin``."""
    n = len(sims)

    def best_other(i: int, other: int) -> float:
        """i's highest similarity to an image other than itself and ``other``."""
        for s, j in zip(sims[i], ids[i]):
            if j >= 0 and j != i and j != other:
                return float(s)
        return -1.0

    pairs = {}
    for i in range(n):
        for s, j in zip(sims[i], ids[i]):
            j = int(j)
            if j < 0 or j == i or s < min_similarity:
                continue
            if s - best_other(i, j) >= margin and s - best_other(j, i) >= margin:
                pairs[(min(i, j), max(i, j))] = float(min(s, 1.0))
            break  # only the nearest neighbour can stand out by a margin
    return [(i, j, s) for (i, j), s in sorted(pairs.items())]


def near_pairs(images: AllImages, exact_limit: int = EXACT_SEARCH_LIMIT) -> tuple[list[DuplicatePair], str]:
    """Near-duplicate pairs between images of different content, searched once per distinct content."""
    first: dict[str, int] = {}
    for i, d in enumerate(images.digests):
        first.setdefault(d, i)
    members: dict[str, list[int]] = {}
    for i, d in enumerate(images.digests):
        members.setdefault(d, []).append(i)
    unique = list(first.values())
    found, index = similar_vectors(images.x[unique], exact_limit=exact_limit)
    pairs = []
    for a, b, s in found:
        for i in members[images.digests[unique[a]]]:
            for j in members[images.digests[unique[b]]]:
                pairs.append(DuplicatePair("near", s, i, j))
    return pairs, index


def leaked(images: AllImages, pairs: list[DuplicatePair]) -> tuple[list[str], list[str]]:
    """Test images with a copy in training or validation; validation images with a copy in training."""
    test, validation = set(), set()
    for p in pairs:
        for a, b in ((p.a, p.b), (p.b, p.a)):
            if images.sets[a] == "testing" and images.sets[b] != "testing":
                test.add(images.paths[a])
            if images.sets[a] == "validation" and images.sets[b] == "training":
                validation.add(images.paths[a])
    return sorted(test), sorted(validation)


# ---------------------------------------------------------------------------------------------
# The whole pass


def run_checks(images: AllImages, labels: list[str], seed: int = 0, folds: int = FOLDS) -> Findings:
    started = time.perf_counter()
    counts = np.bincount(images.y, minlength=len(labels))
    probabilities, errors, note, used = None, [], "", 0
    if len(images.y) and counts.min() >= 2 and len(labels) >= 2:
        used = min(folds, int(counts.min()))
        probabilities = out_of_fold(images, len(labels), used, seed)
        errors = rank_label_errors(images, probabilities, labels)
    else:
        note = "Too few images per class to look for label errors (at least 2 per class are needed)."
    pairs = exact_pairs(images)
    near, index = near_pairs(images)
    findings = Findings(labels, images, probabilities, errors, pairs, index=index, folds=used, note=note)
    findings.pairs += [p for p in near if any(findings.crosses(p))]
    findings.leaked_test, findings.leaked_validation = leaked(images, findings.pairs)
    findings.seconds = time.perf_counter() - started
    return findings


def log_findings(findings: Findings, shown: int = 10) -> None:
    """Leakage into the test set is a WARNING: the test accuracy then overstates the model."""
    im = findings.images
    if findings.leaked_test:
        log.warning("%d test image(s) have an exact or near copy in the training or validation set, so the test "
                    "accuracy overstates the model (see %s in the report):", len(findings.leaked_test), DUPLICATES_CSV)
        shown_pairs = [p for p in findings.pairs if "testing" in (im.sets[p.a], im.sets[p.b])
                       and im.sets[p.a] != im.sets[p.b]]
        for p in shown_pairs[:shown]:
            log.warning("  %s copy (similarity %.3f): %s [%s] ~ %s [%s]", p.kind, p.similarity, im.paths[p.a],
                        im.sets[p.a], im.paths[p.b], im.sets[p.b])
    if findings.leaked_validation:
        log.info("%d validation image(s) have an exact or near copy in the training set.",
                 len(findings.leaked_validation))
    if findings.label_errors:
        log.info("%d image(s) whose folder label a cross-validated layer disputes (%s in the report).",
                 len(findings.label_errors), LABEL_ERRORS_CSV)


def write_csvs(report_dir: Path, findings: Findings) -> None:
    im = findings.images
    with atomic_path(report_dir / LABEL_ERRORS_CSV) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["rank", "path", "set", "label", "suggested", "label_probability", "suggested_probability"])
            for rank, e in enumerate(findings.label_errors, 1):
                w.writerow([rank, e.path, e.set, e.label, e.suggested, f"{e.label_probability:.4f}",
                            f"{e.suggested_probability:.4f}"])
    with atomic_path(report_dir / DUPLICATES_CSV) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["kind", "similarity", "path_a", "set_a", "label_a", "path_b", "set_b", "label_b",
                        "crosses_sets", "crosses_classes"])
            for p in findings.pairs:
                sets_differ, classes_differ = findings.crosses(p)
                w.writerow([p.kind, f"{p.similarity:.4f}", im.paths[p.a], im.sets[p.a], findings.labels[im.y[p.a]],
                            im.paths[p.b], im.sets[p.b], findings.labels[im.y[p.b]], int(sets_differ),
                            int(classes_differ)])


def summary_of(findings: Findings) -> dict:
    """What summary.json says about the data (file names are relative to the report folder)."""
    im = findings.images
    exact = [p for p in findings.pairs if p.kind == "exact"]
    near = [p for p in findings.pairs if p.kind == "near"]
    oof_accuracy = None
    if findings.out_of_fold is not None and len(im.y):
        oof_accuracy = float((findings.out_of_fold.argmax(axis=1) == im.y).mean())
    return {
        "images": int(len(im.y)),
        "seconds": round(findings.seconds, 3),
        "note": findings.note or None,
        "label_errors": {
            "folds": findings.folds,
            "cross_validated_accuracy": oof_accuracy,
            "disputed": len(findings.label_errors),
            "csv": LABEL_ERRORS_CSV,
            "top": [{"path": e.path, "set": e.set, "label": e.label, "suggested": e.suggested,
                     "label_probability": round(e.label_probability, 4),
                     "suggested_probability": round(e.suggested_probability, 4)}
                    for e in findings.label_errors[:SUMMARY_TOP]],
        },
        "duplicates": {
            "csv": DUPLICATES_CSV,
            "index": findings.index,
            "near_min_similarity": NEAR_MIN_SIMILARITY,
            "near_margin": NEAR_MARGIN,
            "exact_pairs": len(exact),
            "exact_cross_class": int(sum(findings.crosses(p)[1] for p in exact)),
            "exact_cross_set": int(sum(findings.crosses(p)[0] for p in exact)),
            "near_pairs": len(near),  # near pairs are kept only when they cross sets or classes
            "near_cross_class": int(sum(findings.crosses(p)[1] for p in near)),
            "near_cross_set": int(sum(findings.crosses(p)[0] for p in near)),
        },
        "leakage": {
            "test_images": len(findings.leaked_test),
            "validation_images": len(findings.leaked_validation),
            "test_paths": findings.leaked_test[:100],
        },
    }


def check_run(plain_sets: dict, digest_of: dict, labels: list[str], seed: int | None, strict: bool) -> Findings:
    """The data checks of a run: log what they found; with ``strict``, leakage into the test set fails it.

    The failure comes before any output is written, like the accuracy gate, so the previous graph stays.
    """
    from ..errors import EXIT_FAILURE, UserError

    findings = run_checks(AllImages.from_sets(plain_sets, digest_of), labels, seed=seed or 0)
    log_findings(findings)
    if strict and findings.leaked_test:
        raise UserError(
            f"{len(findings.leaked_test)} test image(s) have an exact or near copy in the training or validation "
            f"set and --strict is set, e.g. {findings.leaked_test[0]}; the previous outputs were left untouched.",
            exit_code=EXIT_FAILURE,
        )
    return findings
