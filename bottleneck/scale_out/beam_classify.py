"""label_image.py's batch classification as an Apache Beam pipeline (``label_image.py --beam_output DIR``).

    image files -> decode (the local tool's decoder) -> RunInference on the frozen graph -> CSV or JSON rows -> shards

The rows are exactly those that ``--output_format csv`` or ``json`` prints,
error rows included; each shard of CSV rows starts with the header.  The graph
file is staged into the output folder, so workers on a cluster read it from
there (give a gs://... --beam_output on Dataflow).  Rows come out in no
particular order: sort them by path where order matters.  Paths travel through
the pipeline as the bytes the file system gave (data/names.py), since Beam's
text coders take only valid UTF-8, and the rows name them by that module's rule.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..data.decoding import AUTO, FileDecoder, FileTask
from ..data.images import is_candidate
from ..data.storage import exists, files_under, is_url, join, local_file, read_bytes, write_bytes
from ..errors import EXIT_OK, EXIT_USAGE, UserError
from ..label_image.engine import Prediction, expand_inputs, load_classifier, prepare_image, top_labels
from ..label_image.formats import csv_cells, csv_header, csv_line, json_line
from . import beam as beam_common
from .beam_decoding import close_pools, decode_list, list_size, local_workers

NAMESPACE = "classify"


def _handler_class():
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class FrozenGraphHandler(ModelHandler):
        """RunInference on retrain.py's frozen graph, loaded as label_image.py loads it."""

        def __init__(self, graph_uri: str, input_layer: str, output_layer: str, height: int, width: int,
                     batch_size: int):
            super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
            self.graph_uri, self.input_layer, self.output_layer = graph_uri, input_layer, output_layer
            self.height, self.width = height, width

        def load_model(self):
            from ..label_image.engine import load_graph

            return load_graph(local_file(self.graph_uri), self.input_layer, self.output_layer,
                              self.height, self.width)

        def run_inference(self, batch, model, inference_args=None):
            scores = model(np.stack(batch).astype(np.float32))
            return [PredictionResult(None, s) for s in scores]

        def get_metrics_namespace(self) -> str:
            return f"{NAMESPACE}-model"

    return FrozenGraphHandler


def list_inputs(inputs: list[str]) -> list[str]:
    """label_image.py's inputs as file paths: local ones as expand_inputs gives them, URLs through Beam."""
    local = [raw for raw in inputs if not is_url(raw)]
    paths = [str(p) for p in expand_inputs(local)]
    for raw in inputs:
        if not is_url(raw):
            continue
        if exists(raw) and is_candidate(raw):
            paths.append(raw)
            continue
        prefix = raw.rstrip("/") + "/"
        paths += sorted(path for path in files_under(raw)
                        if is_candidate(path) and not any(p.startswith(".") for p in path[len(prefix):].split("/")))
    return paths


def classify_to_shards(args) -> int:
    """Run the pipeline for label_image.py's parsed ``args``; returns its exit code."""
    import apache_beam as beam
    from apache_beam.metrics import Metrics
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    if args.output_format not in ("csv", "json"):
        raise UserError("--beam_output writes rows: use it with --output_format csv or json.")
    if args.evaluate:
        raise UserError("--evaluate prints a summary, not rows; run it without --beam_output.")
    if str(args.graph).lower().endswith(".tflite"):
        raise UserError("--beam_output runs the frozen graph (.pb); pass the --output_graph that retrain.py wrote.")
    if args.precision not in ("auto", "float32"):
        raise UserError(f"--beam_output runs the graph at float32, as every worker can; --precision {args.precision} "
                        "applies to classification on this machine only.")
    args.precision = "float32"  # the workers' processors are not this one's: auto would decide for the wrong machine
    classifier, labels = load_classifier(args)
    paths = list_inputs(list(args.image) + list(args.images))
    if not paths:
        raise UserError("No image files found in the given folders.")
    output_dir = str(args.beam_output)
    if not is_url(output_dir):
        try:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create --beam_output '{output_dir}': {exc.strerror}.") from None
    graph_bytes = Path(args.graph).read_bytes()
    graph_uri = join(output_dir, f"graph-{hashlib.sha256(graph_bytes).hexdigest()[:16]}.pb")
    if not exists(graph_uri):
        write_bytes(graph_uri, graph_bytes)
    height, width, top_k = classifier.height, classifier.width, args.top_k
    mean, std, output_format, threshold = args.input_mean, args.input_std, args.output_format, args.threshold
    handler = KeyedModelHandler(_handler_class()(graph_uri, args.input_layer, args.output_layer, height, width,
                                                 args.batch_size))
    prefix = join(output_dir, f"predictions-{beam_common.run_id()}")
    suffix = ".csv" if output_format == "csv" else ".jsonl"
    rows, failed = Metrics.counter(NAMESPACE, "rows"), Metrics.counter(NAMESPACE, "failed")

    def prepare(name: bytes):
        # A local file is decoded from its path, exactly as label_image.py does; others from their bytes.
        path = os.fsdecode(name)
        try:
            source = path if not is_url(path) else read_bytes(path)
        except OSError as exc:
            source = None
            error = exc.strerror or str(exc)
        result = prepare_image(source, height, width, mean, std) if source is not None else error
        if isinstance(result, str):
            yield beam.pvalue.TaggedOutput("failed", Prediction(path, None, result))
        else:
            yield name, result

    beam_args = getattr(args, "beam_args", ())
    local = not any(is_url(path) for path in paths)
    workers = local_workers(beam_args, len(paths), getattr(args, "decode_workers", AUTO)) if local else None

    def prepare_list(chunk):
        # Worker processes of this machine decode the files from their paths, as label_image.py does.
        outcomes = decode_list(FileDecoder(height, width), height, width, workers,
                               [FileTask(os.fsdecode(name)) for name in chunk])
        for name, pixels in zip(chunk, outcomes):
            if isinstance(pixels, str):
                yield beam.pvalue.TaggedOutput("failed", Prediction(os.fsdecode(name), None, pixels))
            else:
                yield name, (pixels * 255.0 - mean) / std if (mean, std) != (0.0, 255.0) else pixels

    def formatted(prediction: Prediction) -> str:
        rows.inc()
        if prediction.error is not None:
            failed.inc()
        if output_format == "csv":
            return csv_line(csv_cells(prediction, top_k, threshold))
        return json_line(prediction, threshold)

    def scored(keyed) -> Prediction:
        name, result = keyed
        return Prediction(os.fsdecode(name), top_labels(np.asarray(result.inference), labels, top_k))

    header = csv_line(csv_header(top_k, threshold)) if output_format == "csv" else None

    def build(p):
        images = p | "Images" >> beam.Create([os.fsencode(path) for path in paths]) | "Spread" >> beam.Reshuffle()
        if workers is None:
            decode = beam.FlatMap(prepare)
        else:  # prepare_image's pixels, from this machine's worker processes (beam_decoding.py)
            images = images | "Gather" >> beam.BatchElements(min_batch_size=list_size(workers),
                                                             max_batch_size=list_size(workers))
            decode = beam.FlatMap(prepare_list)
        prepared = images | "Decode" >> decode.with_outputs("failed", main="pixels")
        predictions = prepared.pixels | "Classify" >> RunInference(handler) | "Top labels" >> beam.Map(scored)
        ((predictions, prepared.failed) | "All rows" >> beam.Flatten() | "Format" >> beam.Map(formatted)
         | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=suffix,
                                          header=header))

    try:
        result = beam_common.run_pipeline(build, beam_args, "classification")
    finally:
        close_pools()
    counts = beam_common.counter_values(result, NAMESPACE)
    print(f"Wrote {counts.get('rows', 0)} rows to {prefix}-*{suffix}")
    if counts.get("failed", 0):
        import sys

        print(f"label_image.py: error: {counts['failed']} image(s) could not be classified; their rows say why.",
              file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
