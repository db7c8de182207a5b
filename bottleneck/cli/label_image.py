"""label_image.py's command line: its flags and its main, which classifies here or as a Beam pipeline."""
from __future__ import annotations

import argparse
import contextlib
import sys

from ..data.decoding import AUTO, WORKER_KINDS
from ..errors import EXIT_OK, EXIT_USAGE, UserError
from ..label_image.engine import DEFAULT_LABELS, UNKNOWN, classify_paths, expand_inputs, load_classifier
from ..label_image.evaluate import print_evaluation, true_labels
from ..label_image.formats import write_predictions
from ..label_image.multi_label import classify_with_labels, find_thresholds
from ..model.precision import DEFAULT_PRECISION, PRECISIONS
from ..model.tf_import import quiet_tensorflow
from .guard import run_guarded, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """label_image.py's flags (with --beam_output, the flags it does not know are Beam's pipeline options)."""
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
    p.add_argument("--labels_csv", default=None, metavar="FILE",
                   help="With --evaluate: the true labels of the images from a CSV file as retrain.py --labels_csv "
                        "reads it (paths relative to the folder given, else to the CSV's folder); no image "
                        "arguments are needed.")
    p.add_argument("--thresholds", default=None, metavar="FILE",
                   help="A multi-label graph's thresholds file (default: <labels>_thresholds.json beside the labels "
                        "file, which retrain.py --multi_label writes): every label whose score reaches its "
                        "threshold is printed.")
    p.add_argument("--batch_size", type=int, default=32, help="How many images go through the graph at once.")
    p.add_argument("--threshold", type=float, default=None, metavar="P",
                   help=f"Answer '{UNKNOWN}' for an image whose best score is below P (0 to 1): text prints a "
                        f"'{UNKNOWN}' line before the scores, json adds \"answer\", csv an answer column. With "
                        "--evaluate, P joins the thresholds of the accuracy-against-coverage table.")
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="Arithmetic of a frozen graph's network: auto (bfloat16 where the processor computes it "
                        "natively, else float32), float32, bfloat16, or int8 (its network quantized once, run by "
                        "TensorFlow Lite).")
    p.add_argument("--decode_workers", choices=WORKER_KINDS, default=AUTO,
                   help="Where images are decoded: auto (worker processes on a machine with at least 4 usable cores "
                        "and 500 images or more, else threads; docs/performance.md), threads, or processes.")
    p.add_argument("--beam_output", default=None, metavar="DIR",
                   help="Classify as an Apache Beam pipeline (this machine by default; a cluster with Beam's --runner "
                        "options, which are passed through) and write the --output_format csv or json rows as "
                        "shards in DIR (a folder or gs://... URL) instead of printing them.")
    return p


def classify_and_print(args) -> int:
    """Classify the images that ``args`` name and print the answers (or the evaluation); returns the exit code."""
    inputs = list(args.image) + list(args.images)
    classifier, labels = load_classifier(args)
    thresholds = find_thresholds(args, classifier, labels)
    if thresholds is not None or args.labels_csv:  # several labels per image, or the true labels from a CSV file
        return classify_with_labels(args, classifier, labels, thresholds, inputs)
    paths = expand_inputs(inputs)
    if not paths:
        raise UserError("No image files found in the given folders.")
    truth = true_labels(inputs, paths, labels) if args.evaluate else None
    top_k = len(labels) if args.evaluate else args.top_k
    predictions = classify_paths(classifier, labels, paths, top_k, args.input_mean, args.input_std, args.batch_size,
                                 args.decode_workers)
    if args.evaluate:
        failed = print_evaluation(predictions, truth, labels, args.threshold)
    else:
        failed = write_predictions(predictions, args.output_format, args.top_k, several=len(paths) > 1,
                                   threshold=args.threshold)
    return EXIT_USAGE if failed else EXIT_OK


def label_image_main(argv) -> int:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and not args.beam_output:  # other flags are Beam's pipeline options, with --beam_output only
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    args.beam_args = beam_args
    setup_logging("WARN")
    quiet_tensorflow("WARN")
    if args.beam_output:
        from ..scale_out.beam_classify import classify_to_shards
        from .beam_options import check_pipeline_options

        def beam_body():
            check_pipeline_options(beam_args, [opt for action in parser._actions for opt in action.option_strings],
                                   "label_image.py")
            return classify_to_shards(args)

        return run_guarded("label_image.py", beam_body)
    return run_guarded("label_image.py", lambda: classify_and_print(args))
