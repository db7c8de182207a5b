"""TensorBoard summaries under --summaries_dir/train and /validation, as the classic script wrote them.

Each point is built as a Summary protocol buffer by TensorBoard's own NumPy
helpers (``scalar_pb``, ``histogram_pb``, ``text_pb``), buffered, and written
with one ``write_raw_pb`` call per step: TensorFlow's summary ops would compute
every histogram, or trace a writer function, at a cost close to the
training's own.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

FLUSH_EVERY = 500  # buffered steps per writer: bounded memory, few switches between the two writers


class Summaries:
    def __init__(self, summaries_dir):
        import tensorflow as tf

        self._tf = tf
        root = Path(summaries_dir)
        from ..errors import UserError
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
        self._buffered = {self.train: [], self.validation: []}  # writer -> [(step, serialized Summary)]

    def _write(self, writer, step: int, *summaries) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        merged = Summary(value=[value for summary in summaries for value in summary.value])
        self._buffered[writer].append((step, merged.SerializeToString()))
        if len(self._buffered[writer]) >= FLUSH_EVERY:
            self.flush()

    def flush(self):
        for writer, points in self._buffered.items():
            if points:
                with writer.as_default():
                    for step, serialized in points:
                        self._tf.summary.experimental.write_raw_pb(serialized, step=step)
                points.clear()

    def scalars(self, step, train_accuracy, cross_entropy, validation_accuracy=None, validation_cross_entropy=None):
        from tensorboard.plugins.scalar.summary_v2 import scalar_pb

        self._write(self.train, step, scalar_pb("accuracy", train_accuracy), scalar_pb("cross_entropy", cross_entropy))
        if validation_accuracy is not None:
            self._write(self.validation, step, scalar_pb("accuracy", validation_accuracy),
                        scalar_pb("cross_entropy", validation_cross_entropy))

    def histograms(self, step, weights, biases, activations):
        """The classic script's histograms of the new layer: weights, biases and pre-softmax activations."""
        from tensorboard.plugins.histogram.summary_v2 import histogram_pb

        self._write(self.train, step, *(histogram_pb(f"final_training_ops/{name}", np.asarray(values))
                                        for name, values in (("weights", weights), ("biases", biases),
                                                             ("pre_activations", activations))))

    def settings(self, settings: dict):
        """The run's settings as a Markdown table in TensorBoard's Text tab."""
        from tensorboard.plugins.text.summary_v2 import text_pb

        rows = "\n".join(f"| {key} | {value} |" for key, value in settings.items())
        self._write(self.train, 0, text_pb("settings", f"| setting | value |\n|---|---|\n{rows}"))

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
