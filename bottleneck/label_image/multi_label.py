"""label_image.py with a multi-label graph: every label whose score reaches its threshold, and --evaluate per label.

A graph is multi-label when its thresholds file is found: ``--thresholds``, or
the ``<labels>_thresholds.json`` that retrain.py --multi_label wrote beside the
labels file.  ``--threshold P`` replaces every label's own threshold.  In each
format an image gets its labels (best first) and its top_k scores:

* text: the image's path when there are several, then one ``label score`` line
  per label said, or ``unknown`` when none reaches its threshold;
* csv: a ``labels`` column (the labels said, separated by ``|``) before the
  classic label/score columns;
* json: ``"labels"`` (the labels said, each with its score) before ``"predictions"``.

``--evaluate`` takes the true labels of each image from ``--labels_csv`` (the
file retrain.py read) and prints per-label precision, recall, F1 and average
precision, micro and macro F1, mean average precision, and the share of images
with every label right.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..config.settings import thresholds_path
from ..data.labels_csv import LABEL_SEPARATOR, read_labels_csv
from ..data.names import name_cells, name_fields, one_line
from ..errors import EXIT_OK, EXIT_USAGE, UserError
from ..export.thresholds import read_thresholds
from ..training.multi_label_metrics import label_metrics
from .engine import DEFAULT_LABELS, UNKNOWN, Prediction
from .formats import _JSON_LINE_BREAKS, csv_header, csv_line, print_unreadable


def find_thresholds(args, classifier, labels: list[str]) -> list[float] | None:
    """Each label's threshold when the graph is multi-label (else None); --threshold replaces them all."""
    given = getattr(args, "thresholds", None)
    labels_path = args.labels or (DEFAULT_LABELS if not str(args.graph).lower().endswith(".tflite") else None)
    path = Path(given) if given else thresholds_path(labels_path) if labels_path else None
    graph_def = getattr(classifier, "graph_def", None)
    sigmoid = graph_def is not None and any(node.name == classifier.output_layer and node.op == "Sigmoid"
                                            for node in graph_def.node)
    softmax = graph_def is not None and not sigmoid and not given  # a stale file beside a single-label graph's labels
    if path is None or softmax or not (given or path.is_file()):
        if sigmoid:
            raise UserError(f"The graph '{args.graph}' gives a sigmoid score per label, but no thresholds file was "
                            f"found{f' at {one_line(path)}' if path else ''}; pass the one written with it "
                            "(--thresholds).")
        return None
    values = read_thresholds(path, labels)
    return [args.threshold] * len(labels) if args.threshold is not None else values


def said(prediction: Prediction, thresholds: dict[str, float]) -> list[tuple[str, float]]:
    """The labels whose score reaches their threshold, best first."""
    return [(label, score) for label, score in prediction.top or [] if score >= thresholds[label]]


def write_predictions(predictions, output_format: str, top_k: int, several: bool, labels: list[str],
                      thresholds: list[float]) -> int:
    """Print each image's labels as it comes (``predictions`` carry every label's score); returns how many failed."""
    by_label = dict(zip(labels, thresholds))
    failed = 0
    if output_format == "csv":
        header = csv_header(top_k)
        print(csv_line(header[:1] + ["labels"] + header[1:]))
    for prediction in predictions:
        if prediction.error is not None:
            failed += 1
            print_unreadable(prediction)
        yes = said(prediction, by_label)
        top = (prediction.top or [])[:top_k]
        if output_format == "json":
            record = name_fields(prediction.path)
            record.update(labels=[{"label": label, "score": score} for label, score in yes] if prediction.top
                          else None, predictions=[{"label": label, "score": score} for label, score in top],
                          error=prediction.error)
            print(json.dumps(record, ensure_ascii=False).translate(str.maketrans(_JSON_LINE_BREAKS)))
        elif output_format == "csv":
            text, hex_bytes = name_cells(prediction.path)
            cells = [value for label, score in top for value in (label, f"{score:.6f}")]
            cells += [""] * (2 * top_k - len(cells))
            print(csv_line([text, LABEL_SEPARATOR.join(label for label, _s in yes), *cells, prediction.error or "",
                            hex_bytes]))
        elif prediction.error is None:
            if several:
                print(one_line(prediction.path))
            for label, score in yes or [(UNKNOWN, None)]:
                print(label if score is None else f"{label} {score}")
        sys.stdout.flush()
    return failed


def classify_with_labels(args, classifier, labels: list[str], thresholds: list[float] | None, inputs: list[str]):
    """label_image.py's run for a multi-label graph, or for --evaluate against --labels_csv; returns the exit code."""
    from .engine import classify_paths, expand_inputs
    from .evaluate import print_evaluation as print_single_evaluation

    if args.labels_csv and not args.evaluate:
        raise UserError("--labels_csv gives --evaluate the true labels of its images; add --evaluate.")
    if args.evaluate and not args.labels_csv:
        raise UserError("--evaluate of a multi-label graph needs --labels_csv, the CSV file of each image's labels.")
    if args.labels_csv:
        paths, truth = csv_truth(args.labels_csv, inputs, labels, multi_label=thresholds is not None)
    else:
        paths, truth = expand_inputs(inputs), None
    if not paths:
        raise UserError("No image files found in the given folders.")
    top_k = len(labels) if args.evaluate or thresholds is not None else args.top_k
    predictions = classify_paths(classifier, labels, paths, top_k, args.input_mean, args.input_std, args.batch_size,
                                 args.decode_workers)
    if thresholds is None:  # a single-label graph, evaluated against the CSV's one label per image
        failed = print_single_evaluation(predictions, {p: min(s) for p, s in truth.items()}, labels, args.threshold)
    elif args.evaluate:
        failed = print_evaluation(predictions, truth, labels, thresholds)
    else:
        failed = write_predictions(predictions, args.output_format, args.top_k, len(paths) > 1, labels, thresholds)
    return EXIT_USAGE if failed else EXIT_OK


def csv_truth(csv_path, inputs: list[str], labels: list[str], multi_label: bool = True
              ) -> tuple[list[Path], dict[Path, set[int]]]:
    """The images of --labels_csv and the indices of their labels; a folder among the inputs is where the CSV's
    relative paths start (as retrain.py's --image_dir), else the CSV's own folder."""
    folders = [raw for raw in inputs if Path(raw).is_dir()]
    listing = read_labels_csv(csv_path, folders[0] if folders else None, multi_label=multi_label)
    for warning in listing.warnings:
        print(f"label_image.py: warning: {warning}", file=sys.stderr)
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(c.label for c in listing.classes if c.label not in index)
    if unknown:
        raise UserError(f"Label(s) {', '.join(unknown)} of {one_line(csv_path)} match no label of the graph.")
    truth: dict[Path, set[int]] = {}
    for image_class in listing.classes:
        for image in image_class.images:
            truth.setdefault(image.path, set()).add(index[image_class.label])
    return list(truth), truth


def print_evaluation(predictions, truth: dict[Path, set[int]], labels: list[str], thresholds: list[float]) -> int:
    """Print the multi-label figures of the images against their true labels; returns how many images failed."""
    scores, targets, failed = [], [], 0
    for prediction in predictions:
        if prediction.error is not None:
            failed += 1
            print_unreadable(prediction)
            continue
        of = dict(prediction.top)
        scores.append([of[label] for label in labels])
        targets.append([j in truth[prediction.path] for j in range(len(labels))])
    if not scores:
        raise UserError("No image could be classified, so there is nothing to evaluate.")
    m = label_metrics(np.array(scores), np.array(targets), np.array(thresholds))
    shown = lambda v: "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"  # noqa: E731
    print(f"Every label right: {m.all_right * 100:.1f}% (N={m.count})")
    print(f"Micro F1 = {shown(m.micro['f1'])}, macro F1 = {shown(m.macro_f1)}, mean average precision = "
          f"{shown(m.mean_average_precision)}")
    width = max(8, *(len(label) for label in labels))
    print(f"{'label':<{width}} {'threshold':>9} {'precision':>9} {'recall':>9} {'F1':>9} {'AP':>9} {'support':>8}")
    for j, label in enumerate(labels):
        print(f"{label[:width]:<{width}} {thresholds[j]:>9.3f} {shown(m.precision[j]):>9} {shown(m.recall[j]):>9} "
              f"{shown(m.f1[j]):>9} {shown(m.average_precision[j]):>9} {int(m.support[j]):>8}")
    return failed
