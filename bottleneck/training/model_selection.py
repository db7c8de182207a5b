"""Choose the new layer's setting on the user's own images (``--preset auto``): k-fold cross-validation over a
small grid, the simplest setting within noise of the best.

The grid (``GRID``) is a product of axes; each axis lists the values of one flag, or of flags that only make sense
together (an optimizer and its learning rate).  A flag the user gave explicitly is not searched: its value replaces
that flag's entry in every value of its axis.

Every grid point is judged on the same folds (``FOLDS`` of them, stratified by class, copies of one content in one
fold; the caller assigns them), so two points are compared fold by fold (paired).  The choice:

1. the best point is the one with the highest mean accuracy over the folds;
2. a point is *within noise* of it when its mean shortfall is at most one standard error of the fold-by-fold
   differences (their standard deviation over the square root of the number of folds);
3. of the points within noise, the simplest wins: the fewest axes away from the classic defaults (``mixed_10``,
   plain SGD at 0.01, 4,000 steps, no weight decay, no smoothing), then the higher mean, then the earlier point.
   An optimizer with its rate is one axis: Adam at 0.001 is one change from the classic, not two.

Training is fast because it is shared: on one layer's vectors and one fold, every combination of optimizer,
learning rate, weight decay and smoothing is trained at once, as the columns of one weight matrix, on the same
class-balanced batches; a step is then one matrix product forwards and one backwards for all of them.  The step
counts of the grid are snapshots of the same runs: the held-out fold is scored after each.
"""
from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..config.settings import RetrainConfig, TrainSettings
from ..errors import UserError
from .layer import balanced_sampler, truncated_normal

LAYER_FLAG = "bottleneck_layer"
STEPS_FLAG = "how_many_training_steps"


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: the flags it sets and their values, one tuple per grid value."""

    flags: tuple[str, ...]
    values: tuple[tuple, ...]


# The grid of --preset auto, by flag.  The two optimizers at their own usual rate (the classic SGD at 0.01 and
# --preset best's Adam at 0.001), each also at a higher rate; two step counts; weight decay and label smoothing
# off or on.  docs/accuracy.md shows what it chose on flower_photos_dev and why these values.
GRID = (
    Axis((LAYER_FLAG,), (("mixed_10",), ("mixed_9",))),
    Axis(("optimizer", "learning_rate"), (("sgd", 0.01), ("sgd", 0.1), ("adam", 0.001), ("adam", 0.01))),
    Axis((STEPS_FLAG,), ((1000,), (4000,))),
    Axis(("weight_decay",), ((0.0,), (0.001,))),
    Axis(("label_smoothing",), ((0.0,), (0.1,))),
)
FOLDS = 5
SEARCHED_FLAGS = tuple(flag for axis in GRID for flag in axis.flags)
_CLASSIC = RetrainConfig().flags()
CLASSIC = {flag: _CLASSIC[flag] for flag in SEARCHED_FLAGS}  # what "simpler" counts away from


def grid_points(fixed: Mapping[str, object], grid=GRID) -> list[dict]:
    """Every grid point as flag -> value, with each ``fixed`` flag at its given value (so not searched).

    An axis whose flags are all fixed collapses to one value; values that become equal are kept once.
    """
    axes = []
    for axis in grid:
        values = []
        for value in axis.values:
            point = tuple(fixed.get(flag, v) for flag, v in zip(axis.flags, value))
            if point not in values:
                values.append(point)
        axes.append([dict(zip(axis.flags, v)) for v in values])
    return [{k: v for part in combination for k, v in part.items()} for combination in itertools.product(*axes)]


def without_layer(grid=GRID) -> tuple[Axis, ...]:
    """The grid without its bottleneck layer axis: for networks other than the built-in Inception-v3."""
    return tuple(axis for axis in grid if LAYER_FLAG not in axis.flags)


def complexity(point: Mapping[str, object], grid=GRID) -> int:
    """How many axes of the grid ``point`` sets away from the classic defaults."""
    return sum(1 for axis in grid if any(flag in point and point[flag] != CLASSIC[flag] for flag in axis.flags))


@dataclass
class Scored:
    """One grid point and its accuracy on each fold."""

    point: dict
    fold_accuracy: np.ndarray  # [folds]
    shortfall: float = 0.0  # mean accuracy below the best point's
    noise: float = 0.0  # one standard error of the fold-by-fold differences with the best point
    within_noise: bool = False

    @property
    def mean(self) -> float:
        return float(self.fold_accuracy.mean())

    @property
    def std(self) -> float:
        return float(self.fold_accuracy.std(ddof=1)) if len(self.fold_accuracy) > 1 else 0.0


@dataclass
class Selection:
    """What the search found: every point's figures (grid order), the best one and the one chosen."""

    table: list[Scored]
    best: int
    chosen: int
    folds: int
    images: int
    fixed: dict = field(default_factory=dict)  # flag -> value the user gave, not searched
    seconds: float = 0.0

    @property
    def setting(self) -> dict:
        """The chosen point, flag -> value."""
        return dict(self.table[self.chosen].point)

    def log_lines(self) -> list[str]:
        """The table as log lines, one per grid point, best first; the chosen one marked."""
        searched = {i: describe({k: v for k, v in s.point.items() if k not in self.fixed})
                    for i, s in enumerate(self.table)}
        width = max(len(text) for text in searched.values())
        order = sorted(range(len(self.table)), key=lambda i: -self.table[i].mean)
        fixed = f", {describe(self.fixed)} given" if self.fixed else ""
        lines = [f"--preset auto: cross-validated accuracy of {len(self.table)} settings ({self.folds} folds over "
                 f"{self.images} images{fixed}, {self.seconds:.1f} s), mean ± standard deviation over the folds; "
                 "* chosen, + within noise of the best:"]
        for i in order:
            s = self.table[i]
            mark = "*" if i == self.chosen else "+" if s.within_noise else " "
            lines.append(f"{mark} {searched[i]:<{width}}  {s.mean * 100:5.1f}% ± {s.std * 100:4.1f}")
        lines.append(f"--preset auto chose {describe(self.setting)}.")
        return lines

    def summary(self) -> dict:
        """What summary.json records: the rule, the grid, the table, the best and the chosen setting."""
        return {
            "preset": "auto",
            "folds": self.folds,
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "rule": "highest mean accuracy over the folds; of the settings whose mean shortfall is at most one "
                    "standard error of their fold-by-fold differences with it, the one with the fewest flags away "
                    "from the classic defaults",
            "fixed": dict(self.fixed),
            "best": dict(self.table[self.best].point),
            "chosen": self.setting,
            "table": [{"setting": dict(s.point), "mean_accuracy": s.mean, "std": s.std,
                       "fold_accuracy": [float(a) for a in s.fold_accuracy], "shortfall": s.shortfall,
                       "noise": s.noise, "within_noise": s.within_noise, "complexity": complexity(s.point),
                       "chosen": i == self.chosen} for i, s in enumerate(self.table)],
        }


def describe(point: Mapping[str, object]) -> str:
    """A grid point as the flags that would give it, e.g. ``--bottleneck_layer mixed_9 --optimizer adam``."""
    return " ".join(f"--{flag} {value:g}" if isinstance(value, float) else f"--{flag} {value}"
                    for flag, value in point.items())


def choose(table: list[Scored]) -> tuple[int, int]:
    """(best, chosen) indices into ``table`` by the rule in this module's docstring; marks each point's noise."""
    means = np.array([s.mean for s in table])
    simplest_first = sorted(range(len(table)), key=lambda i: (-means[i], complexity(table[i].point), i))
    best = simplest_first[0]
    folds = len(table[best].fold_accuracy)
    for s in table:
        differences = table[best].fold_accuracy - s.fold_accuracy
        s.shortfall = float(differences.mean())
        s.noise = float(differences.std(ddof=1) / math.sqrt(folds)) if folds > 1 else 0.0
        s.within_noise = s.shortfall <= s.noise + 1e-12
    candidates = [i for i in range(len(table)) if table[i].within_noise]
    chosen = min(candidates, key=lambda i: (complexity(table[i].point), -means[i], i))
    return best, chosen


def select(vectors: Mapping[str, np.ndarray], y: np.ndarray, fold: np.ndarray, num_classes: int,
           settings: TrainSettings, fixed: Mapping[str, object], grid=GRID) -> Selection:
    """Cross-validate every grid point and choose one.

    ``vectors``: bottleneck layer -> [N, D] vectors of the same N images, one entry per layer the grid's points
    name (a grid without the layer axis: one entry, any key); ``fold``: each image's fold; ``settings``: the run's
    training settings, whose batch size, dropout and seed every point shares (the grid's flags aside).
    """
    started = time.perf_counter()
    points = grid_points(fixed, grid)
    folds = [k for k in np.unique(fold) if (fold != k).any()]
    if len(folds) < 2:
        raise UserError("--preset auto needs images of at least two different contents in the training and "
                        "validation sets to cross-validate on; give the training flags instead.")
    accuracy = np.zeros((len(points), len(folds)))
    for layer, x in vectors.items():
        of_layer = [i for i, p in enumerate(points) if p.get(LAYER_FLAG, layer) == layer]
        if not of_layer:
            continue
        for column, k in enumerate(folds):
            held = fold == k
            seed = (settings.seed or 0) + int(k)
            scores = train_shared(x[~held], y[~held], x[held], y[held], num_classes,
                                  [points[i] for i in of_layer], settings, seed)
            accuracy[of_layer, column] = scores
    table = [Scored(p, accuracy[i]) for i, p in enumerate(points)]
    best, chosen = choose(table)
    return Selection(table, best, chosen, len(folds), len(y), dict(fixed), time.perf_counter() - started)


def train_shared(x: np.ndarray, y: np.ndarray, held_x: np.ndarray, held_y: np.ndarray, num_classes: int,
                 points: list[dict], settings: TrainSettings, seed: int) -> np.ndarray:
    """Each point's accuracy on the held-out images, every point trained at once on the same batches.

    The points' optimizer settings become heads (columns of one weight matrix); their step counts are the steps
    after which the held-out images are scored.
    """
    from threadpoolctl import threadpool_limits

    heads = list(dict.fromkeys(_head(p, settings) for p in points))  # optimizer, rate, decay, smoothing
    checkpoints = sorted({int(p[STEPS_FLAG]) if STEPS_FLAG in p else settings.steps for p in points})
    rng = np.random.default_rng(seed)
    bank = _Heads(heads, x.shape[1], num_classes, rng)
    sample = balanced_sampler(y, num_classes, rng)
    every_row = np.arange(len(y))
    eye = np.eye(num_classes, dtype=np.float32)
    scored = {}
    with threadpool_limits(limits=1, user_api="blas"):  # small products: threads only add waiting
        for step in range(checkpoints[-1]):
            rows = every_row if settings.batch_size == -1 else sample(settings.batch_size)
            xb = x[rows].astype(np.float32, copy=False)
            if settings.dropout > 0:
                keep = rng.random(xb.shape, dtype=np.float32) >= settings.dropout
                xb = np.where(keep, xb / np.float32(1.0 - settings.dropout), np.float32(0))
            bank.step(xb, eye[y[rows]], step)
            if step + 1 in checkpoints:
                scored[step + 1] = bank.accuracy(held_x.astype(np.float32, copy=False), held_y)
    return np.array([scored[int(p.get(STEPS_FLAG, settings.steps))][heads.index(_head(p, settings))] for p in points])


def _head(point: Mapping[str, object], settings: TrainSettings) -> tuple:
    """What a point trains with, beyond its steps; the run's own value of a flag the grid does not set."""
    return tuple(point.get(flag, getattr(settings, flag)) for flag in ("optimizer", "learning_rate", "weight_decay",
                                                                       "label_smoothing"))


class _Heads:
    """Many softmax layers as one [H * C, D] weight matrix, each head its own optimizer, rate, decay, smoothing.

    Each head's arithmetic is ``training/layer.py``'s: the same initial weights (truncated normal, 0.001), the
    gradient of the mean softmax cross-entropy against the smoothed targets, plus ``weight_decay`` times the
    weights, and the same SGD, momentum and Adam updates.
    """

    def __init__(self, heads: list[tuple], dim: int, num_classes: int, rng: np.random.Generator):
        self.c = num_classes
        order = sorted(range(len(heads)), key=lambda i: heads[i][0])  # one optimizer's heads in adjacent rows
        self.position = np.argsort(order)  # a head's block, in the rows' order
        start = truncated_normal(rng, (dim, num_classes), 0.001).T
        self.w = np.tile(start, (len(heads), 1))  # [H * C, D]: a head's rows are contiguous
        self.b = np.zeros(len(heads) * num_classes, np.float32)
        self.lr = np.repeat(np.asarray([heads[i][1] for i in order], np.float32), num_classes)[:, None]
        self.decay = np.repeat(np.asarray([heads[i][2] for i in order], np.float32), num_classes)[:, None]
        self.smoothing = np.asarray([heads[i][3] for i in order], np.float32)
        self.groups = {}  # optimizer -> its rows
        for optimizer, blocks in itertools.groupby(range(len(heads)), key=lambda j: heads[order[j]][0]):
            blocks = list(blocks)
            self.groups[optimizer] = slice(blocks[0] * num_classes, (blocks[-1] + 1) * num_classes)
        self.first = (np.zeros_like(self.w), np.zeros_like(self.b))
        self.second = (np.zeros_like(self.w), np.zeros_like(self.b))

    def _logits(self, x: np.ndarray) -> np.ndarray:
        return (x @ self.w.T + self.b).reshape(len(x), -1, self.c)  # [B, H, C]

    def step(self, x: np.ndarray, onehot: np.ndarray, step: int) -> None:
        logits = self._logits(x)
        logits -= logits.max(axis=2, keepdims=True)
        probabilities = np.exp(logits)
        probabilities /= probabilities.sum(axis=2, keepdims=True)
        s = self.smoothing[None, :, None]
        targets = onehot[:, None, :] * (1 - s) + s / self.c
        delta = ((probabilities - targets) / len(x)).reshape(len(x), -1)  # [B, H * C]
        grad_w = delta.T @ x
        grad_w += self.decay * self.w
        grad_b = delta.sum(axis=0)
        for optimizer, rows in self.groups.items():
            self._update(optimizer, rows, grad_w[rows], grad_b[rows], step)

    def _update(self, optimizer: str, rows: slice, grad_w: np.ndarray, grad_b: np.ndarray, step: int) -> None:
        lr = self.lr[rows]
        variables = ((self.w[rows], grad_w, lr, self.first[0][rows], self.second[0][rows]),
                     (self.b[rows], grad_b, lr[:, 0], self.first[1][rows], self.second[1][rows]))
        for v, g, rate, m, s2 in variables:
            if optimizer == "sgd":
                v -= rate * g
            elif optimizer == "momentum":
                m *= np.float32(0.9)
                m += g
                v -= rate * m
            elif optimizer == "adam":
                t = step + 1
                beta1, beta2, eps = 0.9, 0.999, 1e-7
                scale = rate * np.float32(np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t))
                m *= np.float32(beta1)
                m += np.float32(1 - beta1) * g
                s2 *= np.float32(beta2)
                s2 += np.float32(1 - beta2) * g * g
                v -= scale * m / (np.sqrt(s2) + np.float32(eps))
            else:
                raise ValueError(f"unknown optimizer {optimizer!r}")

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each head's accuracy on ``x`` (in the heads' original order)."""
        correct = (self._logits(x).argmax(axis=2) == y[:, None]).mean(axis=0)  # [H], sorted order
        return correct[self.position]
