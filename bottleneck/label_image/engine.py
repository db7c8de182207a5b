"""Classify images with a frozen graph written by retrain.py: load it, decode images in batches, rank labels.

A ``--graph`` ending in ``.tflite`` is run with the TensorFlow Lite interpreter
instead (see tflite.py): its input size comes from the model, int8 models get
their input quantized and their scores dequantized, and its embedded labels are
used when no ``--labels`` is given.

The graph is loaded once, images are decoded on every core (data/decoding.py)
ahead of the graph and run through it in batches, so a folder of thousands of
photos costs one graph load.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.checks import check_label_image_flags
from ..data.decoding import AUTO, DecodingPool, FileDecoder, FileTask, Workers, choose_workers
from ..data.images import BadImage, is_candidate, load_for_model
from ..errors import UserError, first_line

DEFAULT_SIZE = 299
DEFAULT_LABELS = "/tmp/output_labels.txt"
UNKNOWN = "unknown"  # the answer below --threshold


@dataclass
class Classifier:
    """A loaded frozen graph: call it with a [N, H, W, 3] float batch to get [N, C] scores."""

    fn: object
    height: int
    width: int
    num_outputs: int
    # The imported graph and its GraphDef, from which --precision cuts the network.
    wrapped: object = None
    graph_def: object = None
    input_layer: str = "Placeholder"
    output_layer: str = "final_result"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return self.fn(tf.constant(batch, tf.float32)).numpy()


def load_graph(path, input_layer="Placeholder", output_layer="final_result", height=None, width=None) -> Classifier:
    import tensorflow as tf

    path = Path(path)
    if path.is_dir():
        raise UserError(
            f"--graph '{path}' is a folder; pass the frozen graph file (.pb) that retrain.py wrote (--output_graph)."
        )
    if not path.is_file():
        raise UserError(f"Graph file '{path}' not found; run retrain.py first or pass --graph.")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except OSError as exc:
        raise UserError(f"Graph file '{path}' cannot be read ({exc.strerror or exc}).") from None
    except Exception:
        raise UserError(f"'{path}' is not a TensorFlow GraphDef (.pb) file.") from None
    if not graph_def.node:  # an empty file parses as an empty graph
        raise UserError(f"'{path}' is not a TensorFlow GraphDef (.pb) file (it holds no graph).")
    nodes = {node.name: node for node in graph_def.node}
    for name, flag in ((input_layer, "--input_layer"), (output_layer, "--output_layer")):
        if name not in nodes:
            raise UserError(f"The graph '{path}' has no tensor named '{name}' (see {flag}).")
    shape = [d.size for d in nodes[input_layer].attr["shape"].shape.dim]
    graph_h = shape[1] if len(shape) == 4 and shape[1] > 0 else None
    graph_w = shape[2] if len(shape) == 4 and shape[2] > 0 else None

    def imports():
        tf.compat.v1.import_graph_def(graph_def, name="")

    try:
        wrapped = tf.compat.v1.wrap_function(imports, [])
        fn = wrapped.prune(
            wrapped.graph.as_graph_element(f"{input_layer}:0"), wrapped.graph.as_graph_element(f"{output_layer}:0")
        )
    except (ValueError, tf.errors.OpError) as exc:
        raise UserError(f"The graph '{path}' cannot be loaded: {first_line(exc).rstrip('.')}.") from None
    shape = fn.outputs[0].shape
    if shape.rank is not None and (shape.rank != 2 or shape[0] is not None):
        raise UserError(
            f"--output_layer '{output_layer}' of the graph '{path}' has shape {shape.as_list()}, not one score per "
            "class for each image ([None, classes]); name the retrained scores (final_result, or retrain.py's "
            "--final_tensor_name)."
        )
    num_outputs = shape[-1] if shape.rank is not None else None
    return Classifier(fn, height or graph_h or DEFAULT_SIZE, width or graph_w or DEFAULT_SIZE, int(num_outputs or 0),
                      wrapped, graph_def, input_layer, output_layer)


def read_labels(path) -> list[str]:
    path = Path(path)
    try:
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise UserError(f"Labels file '{path}' not found; pass the --output_labels file of retrain.py.") from None
    except IsADirectoryError:
        raise UserError(f"Labels file '{path}' is a folder; pass the --output_labels file of retrain.py.") from None
    except OSError as exc:
        raise UserError(f"Labels file '{path}' cannot be read ({exc.strerror or exc}).") from None
    except UnicodeDecodeError:
        raise UserError(
            f"Labels file '{path}' cannot be read: it is not UTF-8 text (one label per line, as retrain.py writes)."
        ) from None


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given, folders walked recursively for image files (sorted, hidden files skipped).

    Symbolic links are followed, but no folder is visited twice, so a link loop ends (as in retrain.py's walk).
    """
    from ..data.walk import walk_folders

    out: list[Path] = []
    visited: dict[str, str] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for dirpath, filenames in walk_folders(p, visited):
                out.extend(Path(dirpath) / f for f in filenames if is_candidate(f))
        else:
            out.append(p)
    return out


@dataclass
class Prediction:
    path: Path
    top: list[tuple[str, float]] | None  # best first
    error: str | None = None


def classify_paths(classifier: Classifier, labels: list[str], paths: list[Path], top_k=5, mean=0.0, std=255.0,
                   batch_size=32, workers: Workers | str = AUTO):
    """Yield a Prediction per path, in order; unreadable images carry an error instead of labels.

    The images are decoded ahead of the graph by ``workers`` (a choice of data/decoding.py, or its name: auto,
    threads, processes), ``batch_size`` paths to a batch.
    """
    if not paths:
        return
    if isinstance(workers, str):
        workers = choose_workers(workers, len(paths))
    decoder = FileDecoder(classifier.height, classifier.width)
    with DecodingPool(decoder, classifier.height, classifier.width, batch_size, workers) as pool:
        for batch in pool.batches(FileTask(str(path)) for path in paths):
            pixels = batch.pixels
            if batch.decoded and (mean, std) != (0.0, 255.0):
                pixels = (pixels * 255.0 - mean) / std  # prepare_image's arithmetic, on the whole batch
            scores = classifier(pixels) if batch.decoded else []
            if batch.decoded and np.shape(scores) != (len(batch.decoded), len(labels)):
                raise UserError(f"The model gave scores of shape {list(np.shape(scores))} for {len(batch.decoded)} "
                                f"images and {len(labels)} labels; --output_layer must name one score per class and "
                                "image.")
            outcome = {**dict(batch.failed), **dict(zip(batch.decoded, scores))}
            for position in sorted(outcome):
                result = outcome[position]
                if isinstance(result, str):
                    yield Prediction(paths[position], None, result)
                else:
                    yield Prediction(paths[position], top_labels(result, labels, top_k))


def prepare_image(source, height: int, width: int, mean=0.0, std=255.0):
    """The model input for an image file (a path or its bytes), or the reason it cannot be read."""
    try:
        pixels = load_for_model(source, height, width)
    except BadImage as exc:
        return str(exc)
    except OSError as exc:
        return exc.strerror or str(exc)
    return (pixels * 255.0 - mean) / std if (mean, std) != (0.0, 255.0) else pixels


def top_labels(scores: np.ndarray, labels: list[str], top_k: int) -> list[tuple[str, float]]:
    best = np.argsort(-scores, kind="stable")[:top_k]
    return [(labels[j], float(scores[j])) for j in best]


def answer(prediction: Prediction, threshold: float | None) -> str | None:
    """The best label, or UNKNOWN when its score is below ``threshold``; None for an unreadable image."""
    if not prediction.top:
        return None
    label, score = prediction.top[0]
    return UNKNOWN if threshold is not None and score < threshold else label


def load_classifier(args):
    """The checked model and labels that label_image.py's ``args`` name: (classifier, labels)."""
    check_label_image_flags(args)
    if str(args.graph).lower().endswith(".tflite"):
        from ..export.tflite import load_tflite

        classifier = load_tflite(args.graph, args.input_height, args.input_width)
        labels_path = args.labels or (None if classifier.labels else DEFAULT_LABELS)
        labels = read_labels(labels_path) if labels_path else classifier.labels
    else:
        labels_path = args.labels or DEFAULT_LABELS
        labels = read_labels(labels_path)
        classifier = load_graph(args.graph, args.input_layer, args.output_layer, args.input_height, args.input_width)
        from ..model.precision import network_precision
        from ..model.runner import graph_runner

        classifier = graph_runner(classifier, network_precision(args.precision))
    if classifier.num_outputs and classifier.num_outputs != len(labels):
        raise UserError(
            f"The labels file '{labels_path}' has {len(labels)} labels but the graph '{args.graph}' "
            f"outputs {classifier.num_outputs} scores; use the labels written with this graph."
        )
    return classifier, labels

