"""Classify images with a frozen graph written by retrain.py (the engine of label_image.py).

The graph is loaded once, images are decoded on a thread pool and run through
it in batches, so a folder of thousands of photos costs one graph load.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EXIT_OK, EXIT_USAGE, UserError
from .images import BadImage, is_candidate, load_for_model

DEFAULT_SIZE = 299


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="label_image.py",
        description="Classify images with a graph trained by retrain.py.",
        epilog="Exit codes: 0 every image classified, 2 usage error or an image that could not be read, 1 other failure.",
    )
    p.add_argument("images", nargs="*", help="Image files or folders (walked recursively).")
    p.add_argument("--image", action="append", default=[], help="Image to be processed (may be repeated).")
    p.add_argument("--graph", default="/tmp/output_graph.pb", help="Graph/model to be executed.")
    p.add_argument("--labels", default="/tmp/output_labels.txt", help="Name of file containing labels.")
    p.add_argument("--input_height", type=int, default=None, help="Input height (default: the graph's own).")
    p.add_argument("--input_width", type=int, default=None, help="Input width (default: the graph's own).")
    p.add_argument("--input_mean", type=float, default=0, help="Input mean, subtracted from 0..255 pixels.")
    p.add_argument("--input_std", type=float, default=255, help="Input std, dividing the pixels after the mean.")
    p.add_argument("--input_layer", default="Placeholder", help="Name of input layer.")
    p.add_argument("--output_layer", default="final_result", help="Name of output layer.")
    p.add_argument("--top_k", type=int, default=5, help="How many of the best labels to print per image.")
    p.add_argument("--batch_size", type=int, default=32, help="How many images go through the graph at once.")
    return p


@dataclass
class Classifier:
    """A loaded frozen graph: call it with a [N, H, W, 3] float batch to get [N, C] scores."""

    fn: object
    height: int
    width: int
    num_outputs: int

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return self.fn(tf.constant(batch, tf.float32)).numpy()


def load_graph(path, input_layer="Placeholder", output_layer="final_result", height=None, width=None) -> Classifier:
    import tensorflow as tf

    path = Path(path)
    if not path.is_file():
        raise UserError(f"Graph file '{path}' not found; run retrain.py first or pass --graph.")
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception:
        raise UserError(f"'{path}' is not a TensorFlow GraphDef (.pb) file.") from None
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
        raise UserError(f"The graph '{path}' cannot be loaded: {str(exc).splitlines()[0]}") from None
    num_outputs = fn.outputs[0].shape[-1]
    return Classifier(fn, height or graph_h or DEFAULT_SIZE, width or graph_w or DEFAULT_SIZE, int(num_outputs or 0))


def read_labels(path) -> list[str]:
    path = Path(path)
    try:
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise UserError(f"Labels file '{path}' not found; pass the --output_labels file of retrain.py.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"Labels file '{path}' cannot be read: {exc}.") from None


def expand_inputs(paths: list[str]) -> list[Path]:
    """Files as given, folders walked recursively for image files (sorted, hidden files skipped)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                out.extend(Path(dirpath) / f for f in sorted(filenames) if is_candidate(f))
        else:
            out.append(p)
    return out


@dataclass
class Prediction:
    path: Path
    top: list[tuple[str, float]] | None  # best first
    error: str | None = None


def classify_paths(classifier: Classifier, labels: list[str], paths: list[Path], top_k=5, mean=0.0, std=255.0,
                   batch_size=32):
    """Yield a Prediction per path, in order; unreadable images carry an error instead of labels."""
    def prepare(path: Path):
        try:
            pixels = load_for_model(path, classifier.height, classifier.width)
        except BadImage as exc:
            return str(exc)
        except OSError as exc:
            return exc.strerror or str(exc)
        return (pixels * 255.0 - mean) / std if (mean, std) != (0.0, 255.0) else pixels

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            prepared = list(pool.map(prepare, chunk))
            good = [i for i, p in enumerate(prepared) if not isinstance(p, str)]
            scores = classifier(np.stack([prepared[i] for i in good]).astype(np.float32)) if good else []
            score_of = dict(zip(good, scores))
            for i, path in enumerate(chunk):
                if i not in score_of:
                    yield Prediction(path, None, prepared[i])
                    continue
                s = score_of[i]
                best = np.argsort(-s, kind="stable")[:top_k]
                yield Prediction(path, [(labels[j], float(s[j])) for j in best])


def run(args) -> int:
    inputs = list(args.image) + list(args.images)
    if not inputs:
        raise UserError("No image given: pass image files or folders, or --image PATH.")
    labels = read_labels(args.labels)
    classifier = load_graph(args.graph, args.input_layer, args.output_layer, args.input_height, args.input_width)
    if classifier.num_outputs and classifier.num_outputs != len(labels):
        raise UserError(
            f"The labels file '{args.labels}' has {len(labels)} labels but the graph '{args.graph}' "
            f"outputs {classifier.num_outputs} scores; use the labels written with this graph."
        )
    paths = expand_inputs(inputs)
    if not paths:
        raise UserError("No image files found in the given folders.")
    several = len(paths) > 1
    failed = 0
    for prediction in classify_paths(classifier, labels, paths, args.top_k, args.input_mean, args.input_std,
                                     args.batch_size):
        if prediction.error is not None:
            failed += 1
            print(f"label_image.py: error: cannot classify {prediction.path}: {prediction.error}", file=sys.stderr)
            continue
        if several:
            print(prediction.path)
        for label, score in prediction.top:
            print(label, score)
        sys.stdout.flush()
    return EXIT_USAGE if failed else EXIT_OK
