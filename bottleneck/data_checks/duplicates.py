"""Duplicates and leakage: exact copies, near copies, and held-out images with a copy in another set.

* Exact duplicates: the same content digest under two paths.
* Near-duplicates: resized, re-encoded or lightly cropped copies, found two
  ways: as bottlenecks that are far more similar to each other than to any
  other image (near scenes), and as copies whose perceptual fingerprints agree
  (copies.py), which finds a copy even among look-alike photos where the
  bottleneck margin rule cannot.
  The search uses faiss: an exact flat inner-product index up to
  ``EXACT_SEARCH_LIMIT`` distinct images; above that, candidates from an
  inverted-file index over a PCA projection, which compares each image only with
  the vectors of its ``IVF_PROBES`` closest clusters (copies sit next to each
  other, so they share a cluster), then scored exactly: an all-pairs search over
  200,000 images would take hours on a laptop.
* Leakage: a test (or validation) image with an exact or near copy in another
  set; its accuracy then measures memory, not generalisation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .all_images import AllImages

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


@dataclass
class DuplicatePair:
    kind: str  # "exact" or "near"
    similarity: float
    a: int  # row indices into AllImages
    b: int


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


def near_pairs(images: AllImages, fingerprints: dict | None = None,
               exact_limit: int = EXACT_SEARCH_LIMIT) -> tuple[list[DuplicatePair], str]:
    """Near-duplicate pairs between images of different content, searched once per distinct content: by the
    bottleneck rule, and where ``fingerprints`` (digest -> (phash, dhash)) are given, as copies by copies.py's
    rule; a pair found by its fingerprints carries its bottlenecks' cosine similarity too."""
    first: dict[str, int] = {}
    for i, d in enumerate(images.digests):
        first.setdefault(d, i)
    members: dict[str, list[int]] = {}
    for i, d in enumerate(images.digests):
        members.setdefault(d, []).append(i)
    unique = list(first.values())
    found, index = similar_vectors(images.x[unique], exact_limit=exact_limit)
    if fingerprints:
        found, index = _with_copies(images, unique, found, fingerprints), f"{index} and perceptual fingerprints"
    pairs = []
    for a, b, s in found:
        for i in members[images.digests[unique[a]]]:
            for j in members[images.digests[unique[b]]]:
                pairs.append(DuplicatePair("near", s, i, j))
    return pairs, index


def _with_copies(images: AllImages, unique: list[int], found, fingerprints: dict):
    """``found`` (pairs of positions in ``unique``) with the copies that the fingerprints find added."""
    from .copies import close_pairs

    similarity = {(a, b): s for a, b, s in found}
    have = [k for k, row in enumerate(unique) if images.digests[row] in fingerprints]
    codes = np.array([fingerprints[images.digests[unique[k]]] for k in have], dtype=np.uint64).reshape(-1, 2)
    for i, j in close_pairs(codes):
        a, b = have[i], have[j]
        if (a, b) not in similarity:
            x, y = images.x[unique[a]], images.x[unique[b]]
            norms = float(np.linalg.norm(x) * np.linalg.norm(y))
            similarity[(a, b)] = min(1.0, float(x @ y) / norms) if norms > 0 else 0.0
    return [(a, b, s) for (a, b), s in sorted(similarity.items())]


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
