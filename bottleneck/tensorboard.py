"""TensorBoard summaries under --summaries_dir/train and /validation, as the classic script wrote them.

Points are buffered and written in batches by one compiled call per writer:
one eager summary op per point cost more than the training itself.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

FLUSH_EVERY = 500  # buffered points per writer


class Summaries:
    def __init__(self, summaries_dir):
        import tensorflow as tf

        self._tf = tf
        root = Path(summaries_dir)
        from .errors import UserError
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create --summaries_dir '{root}': {exc.strerror}.") from None
        try:
            _move_old_runs_aside(root)
        except OSError as exc:
            raise UserError(f"Cannot move the earlier TensorBoard runs in --summaries_dir '{root}' aside: "
                            f"{exc.strerror or exc} ({exc.filename}).") from None
        self.train = tf.summary.create_file_writer(str(root / "train"))
        self.validation = tf.summary.create_file_writer(str(root / "validation"))
        self._points = {"train": [], "validation": []}  # (step, accuracy, cross_entropy)
        self._writers = {name: self._scalar_writer(getattr(self, name)) for name in self._points}

    def _scalar_writer(self, writer):
        tf = self._tf

        # tf.summary.write keeps the tag as given; tf.summary.scalar would prefix the loop's name scope.
        scalar = tf.compat.v1.SummaryMetadata(
            plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars")
        ).SerializeToString()

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 2], tf.float32)])
        def write(steps, values):
            with writer.as_default():
                for i in tf.range(tf.shape(steps)[0]):
                    tf.summary.write("accuracy", values[i, 0], step=steps[i], metadata=scalar)
                    tf.summary.write("cross_entropy", values[i, 1], step=steps[i], metadata=scalar)

        return write

    def scalars(self, step, train_accuracy, cross_entropy, validation_accuracy=None, validation_cross_entropy=None):
        self._points["train"].append((step, train_accuracy, cross_entropy))
        if validation_accuracy is not None:
            self._points["validation"].append((step, validation_accuracy, validation_cross_entropy))
        if len(self._points["train"]) >= FLUSH_EVERY:
            self.flush()

    def histograms(self, step, weights, biases, activations):
        """The classic script's histograms of the new layer: weights, biases and pre-softmax activations."""
        tf = self._tf
        with self.train.as_default(step=step):
            tf.summary.histogram("final_training_ops/weights", weights)
            tf.summary.histogram("final_training_ops/biases", biases)
            tf.summary.histogram("final_training_ops/pre_activations", activations)

    def settings(self, settings: dict):
        """The run's settings as a Markdown table in TensorBoard's Text tab."""
        rows = "\n".join(f"| {key} | {value} |" for key, value in settings.items())
        with self.train.as_default(step=0):
            self._tf.summary.text("settings", f"| setting | value |\n|---|---|\n{rows}")

    def flush(self):
        for name, points in self._points.items():
            if points:
                steps = np.array([p[0] for p in points], np.int64)
                values = np.array([p[1:] for p in points], np.float32)
                self._writers[name](steps, values)
                points.clear()

    def close(self):
        self.flush()
        self.train.close()
        self.validation.close()


def _move_old_runs_aside(root: Path) -> None:
    """The classic script deleted --summaries_dir; we keep earlier runs under previous_runs/<time>/."""
    old = [root / name for name in ("train", "validation") if (root / name).exists()]
    if not old:
        return
    base = time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while (target := root / "previous_runs" / (base if n == 1 else f"{base}-{n}")).exists():
        n += 1
    target.mkdir(parents=True)
    for folder in old:
        folder.rename(target / folder.name)
