"""Every image of the run as the data map and the projector show it: bottleneck, class, set, prediction, flags.

The rows come in one order, the order in which both views take them when
there are too many: every flagged image first (misclassified, suspected label
error, duplicate), then the others in a seeded shuffle, so a sample of the
first N rows keeps every flagged image that fits and the map's points are
among the projector's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.split import SETS
from ..data_checks.findings import Findings
from ..training.numerics import layer_probabilities

MISCLASSIFIED, LABEL_ERROR, DUPLICATE = 1, 2, 4
FLAG_NAMES = {MISCLASSIFIED: "misclassified", LABEL_ERROR: "suspected label error", DUPLICATE: "duplicate"}


@dataclass
class EveryImage:
    x: np.ndarray  # [N, D] plain bottlenecks
    y: np.ndarray  # [N] folder class
    paths: list[str]
    sets: list[str]
    predicted: np.ndarray  # [N] class the model takes it for, -1 where unknown
    flags: np.ndarray  # [N] bits: MISCLASSIFIED | LABEL_ERROR | DUPLICATE

    def __len__(self) -> int:
        return len(self.y)

    def flag_names(self, row: int) -> list[str]:
        return [name for bit, name in FLAG_NAMES.items() if self.flags[row] & bit]

    def take(self, rows: np.ndarray) -> EveryImage:
        return EveryImage(self.x[rows], self.y[rows], [self.paths[r] for r in rows], [self.sets[r] for r in rows],
                          self.predicted[rows], self.flags[rows])


def every_image(sets: dict, layer, predictions: dict[str, tuple[list[str], np.ndarray]], findings: Findings | None,
                seed: int | None, limit: int | None = None) -> tuple[EveryImage, int]:
    """The first ``limit`` rows of the table in sampling order (all without a limit), and how many there are.

    ``sets``: each set's plain SplitData; ``layer``: the new layer to predict with, or None where it does not
    read these bottlenecks (a fine-tuned network); ``predictions``: set -> (paths, probabilities) that the
    run already has (validation and test), which win over the layer's and decide who is misclassified.
    Only the rows kept are gathered as float32, so a large data set's vectors are not copied whole.
    """
    ys, paths, set_names, guesses = [], [], [], []
    for name in SETS:
        data = sets[name]
        ys.append(np.asarray(data.y))
        paths += list(data.names)
        set_names += [name] * len(data.y)
        guesses.append(layer_probabilities(layer, data.x).argmax(axis=1) if layer is not None and len(data.y)
                       else np.full(len(data.y), -1, np.int64))
    y = np.concatenate(ys).astype(np.int64)
    predicted = np.concatenate(guesses).astype(np.int64)
    flags = np.zeros(len(y), np.int64)
    row_of = {(s, p): r for r, (s, p) in enumerate(zip(set_names, paths))}
    for set_name, (names, probabilities) in predictions.items():
        guess = np.asarray(probabilities).argmax(axis=1) if len(names) else []
        for path, g in zip(names, guess):
            row = row_of.get((set_name, path))
            if row is not None:
                predicted[row] = g
                flags[row] |= MISCLASSIFIED if g != y[row] else 0
    if findings is not None:
        by_path = {p: r for r, p in enumerate(paths)}
        flagged = [(e.path, LABEL_ERROR) for e in findings.label_errors]
        flagged += [(findings.images.paths[r], DUPLICATE) for pair in findings.reported_pairs()
                    for r in (pair.a, pair.b)]
        for path, bit in flagged:
            if path in by_path:
                flags[by_path[path]] |= bit
    shuffled = np.random.default_rng(seed if seed is not None else 0).permutation(len(y))
    order = np.concatenate([shuffled[flags[shuffled] != 0], shuffled[flags[shuffled] == 0]]).astype(np.int64)
    order = order[:limit]
    starts = np.cumsum([0] + [len(sets[name].y) for name in SETS])
    dim = next((sets[name].x.shape[1] for name in SETS if len(sets[name].y)), 0)
    x = np.zeros((len(order), dim), np.float32)
    for k, name in enumerate(SETS):  # each set's rows in one gather
        mine = np.flatnonzero((order >= starts[k]) & (order < starts[k + 1]))
        if len(mine):
            x[mine] = sets[name].x[np.sort(order[mine] - starts[k])][np.argsort(np.argsort(order[mine]))]
    return EveryImage(x, y[order], [paths[r] for r in order], [set_names[r] for r in order], predicted[order],
                      flags[order]), len(y)
