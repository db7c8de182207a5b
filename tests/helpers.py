"""Plain helpers the tests share: the tiny feature-extractor module, synthetic photos and image folders,
retrain.py command lines and runs, and checks of the one-sentence error lines.

Fixtures live in conftest.py; test files import these names from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TINY_SIZE = 32
TINY_DIM = 24

# Distinct hues make the synthetic classes separable, as real classes are on real bottlenecks.
CLASS_COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 60, 220),
    "yellow": (230, 220, 40),
}


def build_tiny_module(path: Path) -> Path:
    """A SavedModel following the TF-Hub feature-vector convention: [N, 32, 32, 3] in [0, 1] -> [N, 24]."""
    import tensorflow as tf

    rng = np.random.default_rng(7)
    projection = rng.normal(size=(8 * 8 * 3, TINY_DIM)).astype(np.float32) / 8.0

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.projection = tf.Variable(projection)  # trainable, for --fine_tune_network

        @tf.function(input_signature=[tf.TensorSpec([None, TINY_SIZE, TINY_SIZE, 3], tf.float32)])
        def __call__(self, images):
            pooled = tf.nn.avg_pool2d(images, 4, 4, "VALID")  # [N, 8, 8, 3]
            flat = tf.reshape(pooled, [-1, 8 * 8 * 3])
            return tf.nn.relu(tf.matmul(flat - 0.5, self.projection))

        # The same network cut at its 8x8 grid, for heatmaps (model/heatmaps.py): each cell's share of the
        # projection, whose average over the grid is what __call__ clips at zero.
        @tf.function(input_signature=[tf.TensorSpec([None, TINY_SIZE, TINY_SIZE, 3], tf.float32)])
        def feature_map(self, images):
            pooled = tf.nn.avg_pool2d(images, 4, 4, "VALID")
            return 64.0 * tf.einsum("nijk,ijkd->nijd", pooled - 0.5, tf.reshape(self.projection, [8, 8, 3, TINY_DIM]))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, TINY_DIM], tf.float32)])
        def bottleneck_from_feature_map(self, grid):
            return tf.nn.relu(tf.reduce_mean(grid, axis=[1, 2]))

    tiny = Tiny()
    # Named as a lone function would be by default, so the extra functions leave the signature as it was.
    tf.saved_model.save(tiny, str(path), signatures={"serving_default": tiny.__call__.get_concrete_function()})
    return path


def write_photo(path: Path, colour, seed: int, size=(48, 40), fmt="JPEG") -> Path:
    """A noisy image of one dominant colour; different seeds give different file contents."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float32)
    pixels = np.clip(base + rng.normal(0, 25, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def make_dataset(root: Path, per_class: dict[str, int] | int = 30, seed: int = 0) -> Path:
    """Class folders of synthetic photos under ``root``; returns ``root``."""
    if isinstance(per_class, int):
        per_class = {name: per_class for name in ("red", "green", "blue")}
    for c, (name, count) in enumerate(per_class.items()):
        colour = CLASS_COLOURS.get(name, tuple(int(v) for v in np.random.default_rng(c).integers(0, 255, 3)))
        for i in range(count):
            write_photo(root / name / f"img_{i:03d}.jpg", colour, seed=seed * 100_000 + c * 1000 + i)
    return root


def retrain_args(tmp_path: Path, image_dir: Path, module: Path, *extra: str, steps: int = 200) -> list[str]:
    """A full retrain.py command line whose every output lands under ``tmp_path``."""
    out = tmp_path / "out"
    return [
        f"--image_dir={image_dir}",
        f"--tfhub_module={module}",
        f"--bottleneck_dir={out / 'bottlenecks'}",
        f"--output_graph={out / 'graph.pb'}",
        f"--output_labels={out / 'labels.txt'}",
        f"--summaries_dir={out / 'logs'}",
        f"--checkpoint_path={out / 'checkpoint' / 'ckpt'}",
        f"--intermediate_output_graphs_dir={out / 'intermediate'}",
        f"--how_many_training_steps={steps}",
        "--learning_rate=0.1",
        "--random_seed=1",
        *extra,
    ]


@dataclass(frozen=True)
class TrainedGraph:
    """What one retrain.py run on the tiny module left: its output folder and the images it learnt from."""

    out: Path  # every output of the run
    graph: Path  # --output_graph
    labels: Path  # --output_labels: blue, green, red
    images: Path  # --image_dir

    @property
    def flags(self) -> list[str]:
        """label_image.py's --graph and --labels for this run's outputs."""
        return [f"--graph={self.graph}", f"--labels={self.labels}"]


def run_retrain(tmp_path: Path, image_dir: Path, module: Path, caplog, capsys, *extra: str, steps: int = 10):
    """One in-process retrain.py run on the tiny module: (exit code, log text, stderr text)."""
    from bottleneck.cli.retrain import retrain_main

    caplog.clear()
    caplog.set_level("INFO", logger="retrain")
    code = retrain_main(retrain_args(tmp_path, image_dir, module, *extra, steps=steps))
    return code, caplog.text, capsys.readouterr().err


def import_frozen_graph(path: Path):
    """A tf.Graph holding the frozen GraphDef at ``path``, imported the way classic users did."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(path).read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    return graph


def the_error(err: str) -> str:
    """The one 'retrain.py: error: ...' line, checked to be a lone sentence without a traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("retrain.py: error: ")]
    assert len(errors) == 1, err
    assert errors[0].rstrip().endswith("."), errors[0]
    return errors[0]


def one_sentence(err: str, prog: str = "label_image.py") -> str:
    """stderr holds exactly one line: '<prog>: error: <one sentence>.' and no traceback; returns it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: ") and lines[0].rstrip().endswith("."), lines[0]
    return lines[0]
