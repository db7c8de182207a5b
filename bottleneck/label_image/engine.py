"""Classify images with a frozen graph written by retrain.py (the engine of label_image.py).

A ``--graph`` ending in ``.tflite`` is run with the TensorFlow Lite interpreter
instead (see tflite.py): its input size comes from the model, int8 models get
their input quantized and their scores dequantized, and its embedded labels are
used when no ``--labels`` is given.

The graph is loaded once, images are decoded on a thread pool and run through
it in batches, so a folder of thousands of photos costs one graph load.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.images import BadImage, is_candidate, load_for_model
from ..errors import EXIT_OK, EXIT_USAGE, UserError
from ..model.precision import DEFAULT_PRECISION, PRECISIONS
from ..training.metrics import confusion_matrix

DEFAULT_SIZE = 299
DEFAULT_LABELS = "/tmp/output_labels.txt"
UNKNOWN = "unknown"  # the answer below --threshold

# Characters that would break the one-line-per-image layouts (text and CSV), shown as escapes instead.
_LINE_BREAKING = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x85": "\\x85", "\u2028": "\\u2028",
                  "\u2029": "\\u2029"}


def utf8_name(path) -> str:
    """The path as valid UTF-8 text: bytes of a name that are not UTF-8 are written as ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def one_line_name(path) -> str:
    """``utf8_name``, with line breaks, tabs and other control characters written as escapes (``\\n``, ``\\x1b``)."""
    return "".join(_LINE_BREAKING.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
                   for c in utf8_name(path))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="label_image.py",
        description="Classify images with a graph trained by retrain.py.",
        epilog="Exit codes: 0 every image classified, 2 usage error or an image that could not be read, "
               "1 other failure.",
    )
    p.add_argument("images", nargs="*", help="Image files or folders (walked recursively).")
    p.add_argument("--image", action="append", default=[], help="Image to be processed (may be repeated).")
    p.add_argument("--graph", default="/tmp/output_graph.pb",
                   help="Graph/model to be executed: a frozen graph (.pb) or a TensorFlow Lite model (.tflite).")
    p.add_argument("--labels", default=None,
                   help=f"Name of file containing labels (default: {DEFAULT_LABELS}, or the labels embedded "
                        "in a .tflite model).")
    p.add_argument("--input_height", type=int, default=None, help="Input height (default: the graph's own).")
    p.add_argument("--input_width", type=int, default=None, help="Input width (default: the graph's own).")
    p.add_argument("--input_mean", type=float, default=0, help="Input mean, subtracted from 0..255 pixels.")
    p.add_argument("--input_std", type=float, default=255, help="Input std, dividing the pixels after the mean.")
    p.add_argument("--input_layer", default="Placeholder", help="Name of input layer.")
    p.add_argument("--output_layer", default="final_result", help="Name of output layer.")
    p.add_argument("--top_k", type=int, default=5, help="How many of the best labels to print per image.")
    p.add_argument("--output_format", choices=("text", "json", "csv"), default="text",
                   help="text: the classic 'label score' lines; json: one JSON object per line and image; "
                        "csv: a header and one row per image.")
    p.add_argument("--evaluate", action="store_true",
                   help="The images sit in class folders (folder/<class>/...): print accuracy and a confusion "
                        "matrix against the folder names instead of per-image labels.")
    p.add_argument("--batch_size", type=int, default=32, help="How many images go through the graph at once.")
    p.add_argument("--threshold", type=float, default=None, metavar="P",
                   help=f"Answer '{UNKNOWN}' for an image whose best score is below P (0 to 1): text prints a "
                        f"'{UNKNOWN}' line before the scores, json adds \"answer\", csv an answer column. With "
                        "--evaluate, P joins the thresholds of the accuracy-against-coverage table.")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="Arithmetic of a frozen graph's network: auto (bfloat16 where the processor computes it "
                        "natively, else float32), float32, bfloat16, or int8 (its network quantized once, run by "
                        "TensorFlow Lite).")
    p.add_argument("--beam_output", default=None, metavar="DIR",
                   help="Classify as an Apache Beam pipeline (this machine by default; a cluster with Beam's --runner "
                        "options, which are passed through) and write the --output_format csv or json rows as "
                        "shards in DIR (a folder or gs://... URL) instead of printing them.")
    return p


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
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
        raise UserError(f"The graph '{path}' cannot be loaded: {first}.") from None
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
                   batch_size=32):
    """Yield a Prediction per path, in order; unreadable images carry an error instead of labels."""
    def prepare(path: Path):
        return prepare_image(path, classifier.height, classifier.width, mean, std)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            prepared = list(pool.map(prepare, chunk))
            good = [i for i, p in enumerate(prepared) if not isinstance(p, str)]
            scores = classifier(np.stack([prepared[i] for i in good]).astype(np.float32)) if good else []
            if good and np.shape(scores) != (len(good), len(labels)):
                raise UserError(f"The model gave scores of shape {list(np.shape(scores))} for {len(good)} images and "
                                f"{len(labels)} labels; --output_layer must name one score per class and image.")
            score_of = dict(zip(good, scores))
            for i, path in enumerate(chunk):
                if i not in score_of:
                    yield Prediction(path, None, prepared[i])
                    continue
                yield Prediction(path, top_labels(score_of[i], labels, top_k))


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


def csv_header(top_k: int, threshold: float | None = None) -> list[str]:
    header = ["path"] + (["answer"] if threshold is not None else [])
    return header + [f"{kind}_{i}" for i in range(1, top_k + 1) for kind in ("label", "score")] + ["error"]


def csv_cells(prediction: Prediction, top_k: int, threshold: float | None = None) -> list[str]:
    """One CSV row; the path on one line, whatever characters its name holds."""
    cells = [value for pair in (prediction.top or []) for value in (pair[0], f"{pair[1]:.6f}")]
    cells += [""] * (2 * top_k - len(cells))
    said = [answer(prediction, threshold) or ""] if threshold is not None else []
    return [one_line_name(prediction.path), *said, *cells, prediction.error or ""]


def json_line(prediction: Prediction, threshold: float | None = None) -> str:
    top = [{"label": label, "score": score} for label, score in prediction.top or []]
    record = {"path": utf8_name(prediction.path)}
    if threshold is not None:
        record["answer"] = answer(prediction, threshold)
    record.update(predictions=top, error=prediction.error)
    return json.dumps(record, ensure_ascii=False)


def load_classifier(args):
    """The checked model and labels that label_image.py's ``args`` name: (classifier, labels)."""
    if not (list(args.image) + list(args.images)):
        raise UserError("No image given: pass image files or folders, or --image PATH.")
    if args.top_k <= 0 or args.batch_size <= 0:
        raise UserError("--top_k and --batch_size must be positive.")
    from ..config.checks import check_numbers

    check_numbers(vars(args))
    for flag in ("input_height", "input_width"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise UserError(f"--{flag} must be a positive number of pixels, got {value}.")
    if args.input_std == 0:
        raise UserError("--input_std cannot be 0: the pixels are divided by it.")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UserError(f"--threshold is a score between 0 and 1, got {args.threshold:g}.")
    if str(args.graph).lower().endswith(".tflite"):
        from ..export.tflite import load_tflite

        if args.precision not in ("auto", "float32"):
            raise UserError("--precision applies to frozen graphs (.pb); a .tflite model runs at the precision it "
                            "was converted to (retrain.py --tflite_quantize).")
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


def run(args) -> int:
    inputs = list(args.image) + list(args.images)
    classifier, labels = load_classifier(args)
    paths = expand_inputs(inputs)
    if not paths:
        raise UserError("No image files found in the given folders.")
    truth = true_labels(inputs, paths, labels) if args.evaluate else None
    top_k = len(labels) if args.evaluate else args.top_k
    predictions = classify_paths(classifier, labels, paths, top_k, args.input_mean, args.input_std, args.batch_size)
    if args.evaluate:
        failed = print_evaluation(predictions, truth, labels, args.threshold)
    else:
        failed = write_predictions(predictions, args.output_format, args.top_k, several=len(paths) > 1,
                                   threshold=args.threshold)
    return EXIT_USAGE if failed else EXIT_OK


def answer(prediction: Prediction, threshold: float | None) -> str | None:
    """The best label, or UNKNOWN when its score is below ``threshold``; None for an unreadable image."""
    if not prediction.top:
        return None
    label, score = prediction.top[0]
    return UNKNOWN if threshold is not None and score < threshold else label


def write_predictions(predictions, output_format: str, top_k: int, several: bool,
                      threshold: float | None = None) -> int:
    """Print each prediction as it comes; returns how many images failed.

    With a ``threshold``, each image also gets an answer: its best label, or UNKNOWN below the threshold.
    """
    failed = 0
    writer = None
    with_answer = threshold is not None
    if output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(csv_header(top_k, threshold))
    for prediction in predictions:
        if prediction.error is not None:
            failed += 1
            print(f"label_image.py: error: cannot classify {one_line_name(prediction.path)}: {prediction.error}",
                  file=sys.stderr)
        said = answer(prediction, threshold)
        if output_format == "json":
            print(json_line(prediction, threshold))
        elif output_format == "csv":
            writer.writerow(csv_cells(prediction, top_k, threshold))
        elif prediction.error is None:
            if several:
                print(one_line_name(prediction.path))
            if said == UNKNOWN and with_answer:
                print(UNKNOWN)
            for label, score in prediction.top:
                print(label, score)
        sys.stdout.flush()
    return failed


def true_labels(inputs: list[str], paths: list[Path], labels: list[str]) -> dict[Path, int]:
    """The class of each image from its folder: <given folder>/<class folder>/.../image."""
    from ..data.walk import label_for_folder

    index = {label: i for i, label in enumerate(labels)}
    roots = [Path(raw) for raw in inputs if Path(raw).is_dir()]
    truth: dict[Path, int] = {}
    unknown: set[str] = set()
    for path in paths:
        root = next((r for r in roots if r in path.parents), None)
        if root is None or path.parent == root:
            raise UserError(f"--evaluate needs images inside class folders, but '{path}' is not in one.")
        folder = path.relative_to(root).parts[0]
        label = label_for_folder(folder)
        if label not in index:
            unknown.add(folder)
            continue
        truth[path] = index[label]
    if unknown:
        raise UserError(f"Class folder(s) {', '.join(sorted(unknown))} match no label of the graph.")
    return truth


def print_evaluation(predictions, truth: dict[Path, int], labels: list[str], threshold: float | None = None) -> int:
    true, predicted, confidence, failed = [], [], [], 0
    for prediction in predictions:
        if prediction.error is not None:
            failed += 1
            print(f"label_image.py: error: cannot classify {one_line_name(prediction.path)}: {prediction.error}",
                  file=sys.stderr)
            continue
        true.append(truth[prediction.path])
        predicted.append(labels.index(prediction.top[0][0]))
        confidence.append(prediction.top[0][1])
    if not true:
        raise UserError("No image could be classified, so there is nothing to evaluate.")
    true_a, pred_a = np.array(true), np.array(predicted)
    print(f"Accuracy = {(true_a == pred_a).mean() * 100:.1f}% (N={len(true)})")
    matrix = confusion_matrix(true_a, pred_a, len(labels))
    width = max(8, *(len(label) for label in labels))
    print("Confusion matrix (rows: true class, columns: predicted):")
    print(" " * width + "".join(f" {label[:width]:>{width}}" for label in labels))
    for i, label in enumerate(labels):
        print(f"{label[:width]:<{width}}" + "".join(f" {v:>{width}}" for v in matrix[i]))
    for i, label in enumerate(labels):
        support = matrix[i].sum()
        if support:
            print(f"{label}: recall {matrix[i, i] / support * 100:.1f}% ({matrix[i, i]}/{support})")
    from ..training.calibration import COVERAGE_THRESHOLDS, coverage_table

    thresholds = sorted(set(COVERAGE_THRESHOLDS) | ({threshold} if threshold is not None else set()))
    print(f"Accuracy against coverage (an image is answered when its best score >= the threshold, "
          f"else '{UNKNOWN}'):")
    print(f"{'threshold':>9} {'answered':>9} {'accuracy':>9}")
    for row in coverage_table(np.array(confidence), true_a == pred_a, thresholds):
        accuracy = "n/a" if row["accuracy"] is None else f"{row['accuracy'] * 100:.1f}%"
        print(f"{row['threshold']:>9.2f} {row['coverage'] * 100:>8.1f}% {accuracy:>9} ({row['answered']}/{len(true)})")
    return failed
