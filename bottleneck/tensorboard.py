"""TensorBoard summaries under --summaries_dir/train and /validation, as the classic script wrote them."""
from __future__ import annotations

import time
from pathlib import Path


class Summaries:
    def __init__(self, summaries_dir):
        import tensorflow as tf

        self._tf = tf
        root = Path(summaries_dir)
        _move_old_runs_aside(root)
        self.train = tf.summary.create_file_writer(str(root / "train"))
        self.validation = tf.summary.create_file_writer(str(root / "validation"))

    def scalars(self, step, train_accuracy, cross_entropy, validation_accuracy=None, validation_cross_entropy=None):
        tf = self._tf
        with self.train.as_default(step=step):
            tf.summary.scalar("accuracy", train_accuracy)
            tf.summary.scalar("cross_entropy", cross_entropy)
        if validation_accuracy is not None:
            with self.validation.as_default(step=step):
                tf.summary.scalar("accuracy", validation_accuracy)
                tf.summary.scalar("cross_entropy", validation_cross_entropy)

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

    def close(self):
        self.train.close()
        self.validation.close()


def _move_old_runs_aside(root: Path) -> None:
    """The classic script deleted --summaries_dir; we keep earlier runs under previous_runs/<time>/."""
    old = [root / name for name in ("train", "validation") if (root / name).exists()]
    if not old:
        return
    target = root / "previous_runs" / time.strftime("%Y%m%d-%H%M%S")
    target.mkdir(parents=True, exist_ok=True)
    for folder in old:
        folder.rename(target / folder.name)
