"""Fine-tuning the whole network: every block and the new layer, trained together on decoded images.

Training on cached bottlenecks never shows the network an image it has not
seen before, so it can only move the last layer.  Here each epoch decodes the
training images afresh and distorts each one anew (the run's distortion
flags, a fixed function of the image and the epoch), runs them forwards and
backwards through the whole network, and updates every weight:

- **Optimizer.**  SGD with momentum by default, Adam or LARS on request,
  with decoupled weight decay and the new layer at ten times the network's
  rate.  SGD's steps follow each gradient's own scale; Adam's are about the
  same size for every weight, which moved the small kernels of this network's
  lower layers too far (docs/fine-tuning.md).  With batch normalisation
  folded into the kernels, a gradient's size relative to its kernel differs
  by two orders of magnitude between the stem and the top blocks, so one SGD
  rate moves the stem's kernels far more, relative to their size, than the
  top's; LARS (You, Gitman and Ginsburg, "Large Batch Training of
  Convolutional Networks", 2017) scales each matrix's gradient to the
  matrix's own norm, so that the rate is the share of its size that every
  kernel moves per step (biases keep plain SGD).  The network's weights
  decay towards their trained starting values rather than towards zero (L2-SP,
  Li et al., "Explicit Inductive Bias for Transfer Learning with Convolutional
  Networks", 2018), so a small data set cannot drag them far from what
  ImageNet taught them; the new layer decays towards zero.  The rate rises
  linearly over a warm-up, then falls to zero along a cosine, the usual
  schedule for fine-tuning.  Targets can be label-smoothed.
- **Batch normalisation** stays in inference mode (see model/trainable.py).
- **Precision.**  bfloat16 where the run's precision is bfloat16: the
  forward and backward passes compute in bfloat16, the loss, the gradients'
  sum and the weights stay float32.
- **Devices.**  Each batch is cut into one slice per device; each device
  computes its slice's gradients and the first one adds them up and updates
  the weights, inside one TensorFlow function.
- **Choosing the epoch.**  The validation set is scored before the first
  epoch and after each; the weights of the best validation accuracy (ties:
  the lower cross-entropy) are kept, which are the starting ones when tuning
  did not help.  Training stops early after ``patience`` epochs that did not
  beat the best fine-tuned epoch.
- **Checkpoints.**  After every epoch the weights, Adam's moments, the best
  weights so far and the history are written to one file, atomically, in a
  folder named after everything that determines the training (network,
  images, labels, settings).  A run that was killed picks up after its last
  finished epoch; a run repeated after it finished trains nothing.

Memory does not grow with the data set: images are decoded a batch at a
time, one batch ahead of the network, and the batch size is chosen to fit in
the memory there is when it is not given.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..config.settings import NetworkTuneSettings
from ..data.distort import Distortion
from ..data.images import load_for_model
from ..model.trainable import TrainableNetwork
from .layer import TrainedLayer
from .numerics import cross_entropy

log = logging.getLogger("retrain")

MAX_AUTO_BATCH = 16  # small batches: more updates per epoch on the small data sets this is for
# Bytes that training one image holds (activations kept for the backward pass, their gradients, the convolutions'
# scratch space) per byte of its float32 input: the growth of Inception-v3's peak resident memory from a batch
# of 4 to one of 12 on the CPU, rounded up (docs/fine-tuning.md).
TRAINING_BYTES_PER_INPUT_BYTE = 48
MEMORY_SHARE = 0.5  # of the memory available at the start, for the batch; the rest for everything else
CHECKPOINT_FILE = "checkpoint.npz"
ADAM_BETAS = (0.9, 0.999)
MOMENTUM = 0.9
# The new layer learns at this multiple of the network's rate: it is the part that has to adapt most, the
# network's weights the part to keep close (discriminative rates, as in Howard and Ruder's ULMFiT, 2018).
HEAD_RATE_FACTOR = 10.0
ADAM_EPSILON = 1e-7


@dataclass
class LabelledImages:
    """One set's images, decoded when needed."""

    paths: list[Path]
    digests: list[str]  # content digests: a distortion is a function of the content and the epoch
    y: np.ndarray  # [N] class indices

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class EpochPoint:
    epoch: int  # 0: before fine-tuning
    train_accuracy: float | None
    train_cross_entropy: float | None
    validation_accuracy: float | None
    validation_cross_entropy: float | None
    seconds: float = 0.0  # of this epoch's training and validation


@dataclass
class NetworkTuneResult:
    values: dict[str, np.ndarray]  # the kept network weights, by TrainableNetwork name
    layer: TrainedLayer  # the kept new layer
    history: list[EpochPoint]
    best_epoch: int  # 0: the starting weights were kept
    batch_size: int
    resumed_after: int  # the epoch a previous, interrupted run had finished (0: none)
    stopped_early: bool
    seconds: float = 0.0  # this run's share
    seconds_per_epoch: float | None = None  # mean over the epochs this run trained
    compute_dtype: str = "float32"
    devices: list[str] = field(default_factory=list)
    validation_logits: np.ndarray | None = None  # [N, C] the kept weights' scores of the validation images

    @property
    def helped(self) -> bool:
        return self.best_epoch > 0

    @property
    def kept(self) -> EpochPoint:
        """The evaluation whose weights were kept."""
        return next(p for p in self.history if p.epoch == self.best_epoch)


def memory_available() -> int | None:
    """Bytes of memory available to new allocations now (Linux), or None where it cannot be told."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def choose_batch_size(given: int, height: int, width: int, available: int | None) -> int:
    """``given``, or the largest power of two up to MAX_AUTO_BATCH whose training fits in a share of memory."""
    if given > 0:
        return given
    if available is None:
        return MAX_AUTO_BATCH // 2
    per_image = height * width * 3 * 4 * TRAINING_BYTES_PER_INPUT_BYTE
    fits = int(available * MEMORY_SHARE // per_image)
    size = 1
    while size * 2 <= min(fits, MAX_AUTO_BATCH):
        size *= 2
    return size


def learning_rate(step: int, total: int, peak: float, warmup: float) -> float:
    """Linear warm-up over ``warmup`` of the ``total`` steps, then a cosine down to zero at the last step."""
    warm = max(1, int(round(warmup * total))) if warmup > 0 else 0
    if step < warm:
        return peak * (step + 1) / warm
    rest = max(1, total - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(step - warm, rest) / rest))


def job_key(identity: str, labels: list[str], train: LabelledImages, validation: LabelledImages,
            settings: NetworkTuneSettings, distortion: Distortion, compute_dtype: str, seed: int | None) -> str:
    """What names a fine-tuning job: the same key means a checkpoint of it may be resumed."""
    what = {
        "network": identity, "labels": labels, "dtype": compute_dtype, "seed": seed,
        "settings": {k: v for k, v in asdict(settings).items() if k != "enabled"},
        "distortion": asdict(distortion),
        "train": sorted(zip(train.digests, map(int, train.y))),
        "validation": sorted(zip(validation.digests, map(int, validation.y))),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:20]


def batches_ahead(load: Callable[[list[int]], np.ndarray], groups: list[list[int]], workers: int = 2):
    """Yield (rows, decoded batch) for each group of rows, decoding the next batch while the current one trains."""
    if not groups:
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = pool.submit(load, groups[0])
        for i, rows in enumerate(groups):
            batch = pending.result()
            if i + 1 < len(groups):
                pending = pool.submit(load, groups[i + 1])
            yield rows, batch


def tune_network(
    network: TrainableNetwork,
    layer: TrainedLayer,
    train: LabelledImages,
    validation: LabelledImages,
    num_classes: int,
    settings: NetworkTuneSettings,
    distortion: Distortion,
    height: int,
    width: int,
    checkpoint_dir: Path | None,
    compute_dtype: str = "float32",
    devices: list[str] | None = None,
    seed: int | None = None,
    on_step: Callable[[], None] | None = None,
    on_epoch: Callable[[EpochPoint], None] | None = None,
) -> NetworkTuneResult:
    """Train ``network`` and the new ``layer`` together; returns the kept weights (the network's are also assigned)."""
    import tensorflow as tf

    started = time.perf_counter()
    dtype = tf.bfloat16 if compute_dtype == "bfloat16" else tf.float32
    devices = list(devices or [])
    batch_size = choose_batch_size(settings.batch_size, height, width, memory_available())
    steps_per_epoch = max(1, math.ceil(len(train) / batch_size))
    total_steps = settings.epochs * steps_per_epoch

    head_w = tf.Variable(layer.weights, name="final_weights")
    head_b = tf.Variable(layer.biases, name="final_biases")
    weights = [*network.variables, head_w, head_b]
    names = [*network.names, "final_weights", "final_biases"]
    start_values = [tf.constant(v.numpy()) for v in network.variables]  # what L2-SP pulls towards
    first_moment = [tf.Variable(tf.zeros_like(v), trainable=False) for v in weights]
    second_moment = [tf.Variable(tf.zeros_like(v), trainable=False) for v in weights]
    step_count = tf.Variable(0, dtype=tf.int64, trainable=False)
    image_spec = tf.TensorSpec([None, height, width, 3], tf.float32)

    def logits_of(images):
        return tf.matmul(network.forward(images, dtype), head_w) + head_b

    def slice_gradients(images, labels):
        targets = tf.one_hot(labels, num_classes)
        if settings.label_smoothing > 0:
            targets = targets * (1.0 - settings.label_smoothing) + settings.label_smoothing / num_classes
        with tf.GradientTape() as tape:
            logits = logits_of(images)
            loss_sum = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(targets, logits))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32))
        return loss_sum, correct, tape.gradient(loss_sum, weights)

    @tf.function(input_signature=[image_spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.float32)],
                 autograph=False)
    def train_step(images, labels, rate):
        count = tf.shape(images)[0]
        if len(devices) > 1:
            per_device = (count + len(devices) - 1) // len(devices)
            parts = []
            for i, device in enumerate(devices):
                with tf.device(device):
                    parts.append(slice_gradients(images[i * per_device:(i + 1) * per_device],
                                                 labels[i * per_device:(i + 1) * per_device]))
            loss_sum = tf.add_n([p[0] for p in parts])
            correct = tf.add_n([p[1] for p in parts])
            gradients = [tf.add_n([p[2][k] for p in parts]) for k in range(len(weights))]
        else:
            loss_sum, correct, gradients = slice_gradients(images, labels)
        n = tf.cast(count, tf.float32)
        step_count.assign_add(1)
        t = tf.cast(step_count, tf.float32)
        b1, b2 = ADAM_BETAS
        for k, (w, g) in enumerate(zip(weights, gradients)):
            g = g / n
            in_network = k < len(start_values)
            step_rate = rate if in_network else rate * HEAD_RATE_FACTOR
            if settings.optimizer == "adam":
                first_moment[k].assign(b1 * first_moment[k] + (1.0 - b1) * g)
                second_moment[k].assign(b2 * second_moment[k] + (1.0 - b2) * tf.square(g))
                corrected = step_rate * tf.sqrt(1.0 - b2 ** t) / (1.0 - b1 ** t)
                update = corrected * first_moment[k] / (tf.sqrt(second_moment[k]) + ADAM_EPSILON)
            else:
                if settings.optimizer == "lars" and len(w.shape) >= 2:  # kernels and the new layer's matrix
                    w_norm, g_norm = tf.norm(w), tf.norm(g)
                    g = g * tf.where(g_norm > 0, w_norm / tf.maximum(g_norm, 1e-30), 0.0)
                first_moment[k].assign(MOMENTUM * first_moment[k] + g)
                update = step_rate * first_moment[k]
            anchor = start_values[k] if in_network else tf.zeros_like(w)
            w.assign_sub(update + step_rate * settings.weight_decay * (w - anchor))
        return loss_sum / n, correct / n

    @tf.function(input_signature=[image_spec], autograph=False)
    def infer(images):
        return logits_of(images)

    def load_plain(data: LabelledImages, rows: list[int]) -> np.ndarray:
        return np.stack([load_for_model(data.paths[r], height, width) for r in rows])

    def load_distorted(epoch: int, rows: list[int]) -> np.ndarray:
        if not distortion.active:
            return load_plain(train, rows)
        return np.stack([distortion.load(train.paths[r], train.digests[r], epoch, height, width) for r in rows])

    def validate(epoch: int, train_accuracy=None, train_loss=None, seconds=0.0) -> tuple[EpochPoint, np.ndarray]:
        point = EpochPoint(epoch, train_accuracy, train_loss, None, None, seconds)
        logits = np.zeros((0, num_classes), np.float32)
        if len(validation):
            groups = [list(range(s, min(s + batch_size, len(validation)))) for s in range(0, len(validation),
                                                                                      batch_size)]
            logits = np.concatenate([infer(batch).numpy() for _rows, batch in
                                     batches_ahead(lambda rows: load_plain(validation, rows), groups)])
            point.validation_accuracy = float((logits.argmax(axis=1) == validation.y).mean())
            point.validation_cross_entropy = cross_entropy(logits, validation.y)
        return point, logits

    def current() -> dict[str, np.ndarray]:
        return {name: w.numpy() for name, w in zip(names, weights)}

    def better(point: EpochPoint, best: EpochPoint) -> bool:
        if point.validation_accuracy is None:
            return True  # nothing to judge by: the latest weights
        return _rank(point) > _rank(best)

    state = _resume(checkpoint_dir, names, weights, first_moment, second_moment, step_count)
    if state is not None:
        history = [EpochPoint(**p) for p in state["history"]]
        best_epoch, kept, stopped = state["best_epoch"], state["kept"], state["stopped_early"]
        kept_logits = state["kept_logits"]
        log.info("Resuming the whole network's fine-tuning after epoch %d of %d (checkpoint in %s).",
                 history[-1].epoch, settings.epochs, checkpoint_dir)
    else:
        before, kept_logits = validate(0)
        history, best_epoch, kept, stopped = [before], 0, current(), False
        _log_point(before, settings)
        if on_epoch is not None:
            on_epoch(before)
    resumed_after = history[-1].epoch if state is not None else 0
    rng_seed = 0 if seed is None else seed
    trained_seconds = []
    for epoch in range(history[-1].epoch + 1, settings.epochs + 1):
        if stopped:
            break
        epoch_started = time.perf_counter()
        order = np.random.default_rng([rng_seed, epoch]).permutation(len(train))
        groups = [order[s:s + batch_size].tolist() for s in range(0, len(order), batch_size)]
        losses, accuracies, sizes = [], [], []
        for rows, images in batches_ahead(lambda rows, e=epoch: load_distorted(e, rows), groups):
            step = int(step_count.numpy())
            rate = learning_rate(step, total_steps, settings.learning_rate, settings.warmup)
            loss, accuracy = train_step(images, train.y[rows].astype(np.int32), np.float32(rate))
            losses.append(float(loss))
            accuracies.append(float(accuracy))
            sizes.append(len(rows))
            if on_step is not None:
                on_step()
        point, logits = validate(epoch, float(np.average(accuracies, weights=sizes)),
                                 float(np.average(losses, weights=sizes)))
        point.seconds = time.perf_counter() - epoch_started
        trained_seconds.append(point.seconds)
        history.append(point)
        _log_point(point, settings)
        best = next(p for p in history if p.epoch == best_epoch)
        if better(point, best):
            best_epoch, kept, kept_logits = epoch, current(), logits
        stopped = stops_early(history, settings.patience, settings.epochs)
        if stopped:
            log.info("No better validation accuracy than fine-tuning's best epoch for %d epochs: stopping after "
                     "epoch %d of %d.", settings.patience, epoch, settings.epochs)
        _save(checkpoint_dir, names, weights, first_moment, second_moment, step_count, kept, kept_logits,
              {"history": [asdict(p) for p in history], "best_epoch": best_epoch, "stopped_early": stopped})
        if on_epoch is not None:
            on_epoch(point)

    for name, w in zip(names, weights):  # the kept weights, so that the network computes with them from now on
        w.assign(kept[name])
    final = TrainedLayer(weights=kept["final_weights"], biases=kept["final_biases"], history=layer.history,
                         best_step=layer.best_step)
    return NetworkTuneResult(
        values={name: kept[name] for name in network.names}, layer=final, history=history, best_epoch=best_epoch,
        batch_size=batch_size, resumed_after=resumed_after, stopped_early=stopped,
        seconds=time.perf_counter() - started,
        seconds_per_epoch=float(np.mean(trained_seconds)) if trained_seconds else None,
        compute_dtype=compute_dtype, devices=devices, validation_logits=kept_logits)


def _rank(point: EpochPoint) -> tuple[float, float]:
    """How epochs compare: the higher validation accuracy, then the lower cross-entropy."""
    return point.validation_accuracy, -point.validation_cross_entropy


def stops_early(history: list[EpochPoint], patience: int, epochs: int) -> bool:
    """Whether fine-tuning stops after the last epoch of ``history``: ``patience`` epochs in a row that did not beat
    its best fine-tuned epoch.  The starting point (epoch 0) is not what the count runs from: a first epoch often
    loses validation accuracy that later ones, at a decaying rate, win back and more, and a run stopped by it would
    never get there (docs/fine-tuning.md).  The starting weights are still kept when no epoch beats them."""
    tuned = [p for p in history if p.epoch > 0]
    if not patience or not tuned or tuned[-1].epoch >= epochs or tuned[-1].validation_accuracy is None:
        return False
    best = max(tuned, key=_rank)  # the earliest of ties
    return tuned[-1].epoch - best.epoch >= patience


def classify_images(network: TrainableNetwork, layer: TrainedLayer, data: LabelledImages, height: int, width: int,
                    batch_size: int, compute_dtype: str = "float32") -> np.ndarray:
    """[N, C] logits of the (tuned) network and new layer for ``data``'s images, decoded a batch at a time."""
    import tensorflow as tf

    dtype = tf.bfloat16 if compute_dtype == "bfloat16" else tf.float32

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)], autograph=False)
    def infer(images):
        return tf.matmul(network.forward(images, dtype), layer.weights) + layer.biases

    groups = [list(range(s, min(s + batch_size, len(data)))) for s in range(0, len(data), batch_size)]
    parts = [infer(batch).numpy() for _rows, batch in batches_ahead(
        lambda rows: np.stack([load_for_model(data.paths[r], height, width) for r in rows]), groups)]
    return np.concatenate(parts) if parts else np.zeros((0, layer.biases.shape[0]), np.float32)


def _log_point(point: EpochPoint, settings: NetworkTuneSettings) -> None:
    what = f"Top {settings.blocks} block(s) of the network" if settings.blocks else "Whole network"
    when = "before fine-tuning" if point.epoch == 0 else f"epoch {point.epoch}/{settings.epochs}"
    parts = []
    if point.train_accuracy is not None:
        parts.append(f"train accuracy {point.train_accuracy * 100:.1f}%, cross entropy {point.train_cross_entropy:.4f}")
    if point.validation_accuracy is not None:
        parts.append(f"validation accuracy {point.validation_accuracy * 100:.1f}%, cross entropy "
                     f"{point.validation_cross_entropy:.4f}")
    if point.epoch:
        parts.append(f"{point.seconds:.0f} s")
    log.info("%s, %s: %s.", what, when, "; ".join(parts) or "no validation images")


def _save(folder: Path | None, names, weights, first_moment, second_moment, step_count, kept, kept_logits,
          state: dict) -> None:
    """One file with the weights, the optimizer's moments, the kept weights with their validation scores and the
    history, written whole or not at all."""
    if folder is None:
        return
    state = {"epoch": state["history"][-1]["epoch"], **state}
    arrays = {"step": np.array(int(step_count.numpy())), "state": np.array(json.dumps(state)),
              "kept_validation_logits": kept_logits}
    for k, name in enumerate(names):
        arrays[f"w:{name}"] = weights[k].numpy()
        arrays[f"m:{name}"] = first_moment[k].numpy()
        arrays[f"v:{name}"] = second_moment[k].numpy()
        arrays[f"kept:{name}"] = kept[name]
    with atomic_path(folder / CHECKPOINT_FILE) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _resume(folder: Path | None, names, weights, first_moment, second_moment, step_count) -> dict | None:
    """The state of an interrupted run of the same job, with its weights restored; None when there is none."""
    if folder is None or not (folder / CHECKPOINT_FILE).is_file():
        return None
    try:
        with np.load(folder / CHECKPOINT_FILE) as saved:
            missing = [n for n in names if f"w:{n}" not in saved.files]
            if missing:
                raise ValueError(f"it lacks {missing[0]}")
            arrays = {key: saved[key] for key in saved.files}
        state = json.loads(str(arrays["state"]))
    except (OSError, ValueError, KeyError, EOFError, json.JSONDecodeError) as exc:
        log.warning("Not resuming from the checkpoint in %s (%s); fine-tuning the whole network from the start.",
                    folder, exc)
        return None
    for k, name in enumerate(names):
        weights[k].assign(arrays[f"w:{name}"])
        first_moment[k].assign(arrays[f"m:{name}"])
        second_moment[k].assign(arrays[f"v:{name}"])
    step_count.assign(int(arrays["step"]))
    state["kept"] = {name: arrays[f"kept:{name}"] for name in names}
    state["kept_logits"] = arrays.get("kept_validation_logits")  # None in a checkpoint written before they were kept
    return state
