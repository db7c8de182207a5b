"""Bottleneck creation as an Apache Beam pipeline: the same keys and vectors as retrain.py, on any number of machines.

    python -m bottleneck beam-bottlenecks --image_dir DIR [--bottleneck_dir DIR] [--output_dir DIR] [Beam options]

(the command line is in cli.py)

The pipeline:

    class folders -> image files -> SHA-256 -> drop keys already known -> decode -> RunInference -> Parquet shards
                                      \\-> unreadable                    \\-> undecodable ------------> skipped record

* Images are listed with walk.py's rules (its own code for local folders; the
  same name rules for object stores, which have no links or real folders).
* The content key is the cache's: the SHA-256 of the file plus the module's
  identity.  Keys already in the cache under --bottleneck_dir or in shards
  already in the output folder are dropped before anything is decoded, and
  files with the same content are computed once.
* Pixels come from images.load_for_model, the local tool's decoder; the
  network is the module's feature function exported once as a SavedModel
  (staged in the output folder, loaded on every worker with
  tf.saved_model.load), so the vectors are those of local extraction.
* Shards are written by Beam's Parquet sink: temporary files renamed on
  success, so a worker retry or a failed run leaves no partial shard.  Each
  run's files carry their own name prefix, so a re-run never overwrites one.
* File names travel as the bytes the file system gave (data/names.py), which
  Beam's coders carry whatever they are; the skipped record names them by that
  module's rule.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache.shards import SHARD_PATTERN, SKIPPED_PATTERN, UNDECODABLE_DIGEST, shard_digests
from ..cache.store import DB_NAME, BottleneckCache
from ..data.decoding import AUTO, CHANGED_WHILE_READ, FileDecoder, FileTask
from ..data.digest import stream_digest
from ..data.images import BadImage, is_candidate, load_for_model
from ..data.names import name_fields
from ..data.storage import files_under, is_url, join, list_files, local_folder, open_binary, read_bytes
from ..errors import UserError
from . import beam as beam_common
from .beam_decoding import close_pools, decode_list, list_size, local_workers

NAMESPACE = "bottlenecks"
MODEL_INFO = "retrain_module.json"


@dataclass(frozen=True)
class Outcome:
    listed: int  # image files found
    known: int  # already in the cache or in earlier shards
    computed: int  # vectors written to this run's shards
    skipped: int  # images that could not be read or decoded
    shards: str  # this run's shard files, as a glob
    skipped_record: str  # this run's record of skipped images


# ----------------------------------------------------------------- the model, exported once


def export_feature_model(module, directory: Path) -> None:
    """Save ``module``'s feature function as a SavedModel: float32 [N, H, W, 3] in [0, 1] -> [N, D]."""
    import tensorflow as tf

    holder = tf.Module()
    owner = getattr(module.features, "owner", None)
    if owner is not None:  # a loaded SavedModel or TF-Hub module: its variables must travel with the function
        holder.owner = owner
    holder.features = tf.function(
        module.features, input_signature=[tf.TensorSpec([None, module.height, module.width, 3], tf.float32)],
        autograph=False,
    )
    tf.saved_model.save(holder, str(directory))
    info = {"identity": module.identity, "height": module.height, "width": module.width,
            "dim": module.bottleneck_size}
    (directory / MODEL_INFO).write_text(json.dumps(info, indent=1))


def stage_model(module, output_dir: str, log=print) -> str:
    """The URI of the module's exported SavedModel under ``output_dir``, exported on first use."""
    uri = join(output_dir, f"feature-model-{beam_common.short_digest(module.identity)}")
    if beam_common.is_staged(uri):
        return uri
    log(f"Exporting the feature extractor for the pipeline to {uri}")
    with tempfile.TemporaryDirectory(prefix="retrain-export-") as tmp:
        local = Path(tmp) / "model"
        export_feature_model(module, local)
        beam_common.stage_folder(local, uri)
    return uri


def _model_handler_class():
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult

    class FeatureModelHandler(ModelHandler):
        """RunInference on the exported feature extractor, loaded with tf.saved_model.load.

        Beam's own TensorFlow handler loads through tf.keras, which Keras 3 refuses for a plain SavedModel.
        """

        def __init__(self, model_uri: str, batch_size: int, bfloat16: bool = False):
            super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
            self.model_uri = model_uri
            self.bfloat16 = bfloat16

        def load_model(self):
            import tensorflow as tf

            return tf.saved_model.load(local_folder(self.model_uri))

        def run_inference(self, batch, model, inference_args=None):
            import tensorflow as tf

            from ..model.precision import bfloat16_scope

            with bfloat16_scope(self.bfloat16):
                vectors = model.features(tf.constant(np.stack(batch))).numpy()
            return [PredictionResult(None, vector) for vector in vectors]

        def get_metrics_namespace(self) -> str:
            return f"{NAMESPACE}-model"

    return FeatureModelHandler


# ----------------------------------------------------------------- the steps


def remote_images(root: str):
    """The image files under ``root`` on an object store, by walk.py's name rules.

    The first path component below the root is the class folder; hidden names
    anywhere are ignored; files count as images by extension.
    """
    prefix = root.rstrip("/") + "/"
    for path in files_under(root):
        parts = path[len(prefix):].split("/")
        if len(parts) >= 2 and not any(part.startswith(".") for part in parts) and is_candidate(parts[-1]):
            yield path


def _read_error(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


def _dofns():
    import apache_beam as beam
    from apache_beam.metrics import Metrics

    class HashFile(beam.DoFn):
        """name -> (SHA-256 of the file, name); unreadable files go to 'skipped'. Names are the bytes the file
        system gave (data/names.py), which Beam's coders carry whatever they are."""

        def __init__(self):
            self.listed = Metrics.counter(NAMESPACE, "listed")

        def process(self, name: bytes):
            self.listed.inc()
            try:
                with open_binary(os.fsdecode(name)) as f:
                    digest = stream_digest(f)
            except Exception as exc:  # a vanished, unreadable or unreachable file
                yield beam.pvalue.TaggedOutput("skipped", (name, _read_error(exc), None))
                return
            yield digest, name

    class KeepUnknown(beam.DoFn):
        """(digest, {paths, known}) -> (digest, paths) for content not computed before, each content once."""

        def __init__(self):
            self.known = Metrics.counter(NAMESPACE, "already_known")

        def process(self, element):
            digest, grouped = element
            paths = sorted(grouped["paths"])
            if not paths:
                return
            if list(grouped["known"]):
                self.known.inc(len(paths))
                return
            yield digest, paths

    class Decode(beam.DoFn):
        """(digest, paths) -> (digest, pixels) with the local tool's decoder; bad images go to 'skipped'."""

        def __init__(self, height: int, width: int):
            self.height, self.width = height, width

        def process(self, element):
            digest, paths = element
            try:
                pixels = load_for_model(read_bytes(os.fsdecode(paths[0])), self.height, self.width)
            except BadImage as exc:
                reason, content = str(exc), digest  # the content itself cannot be decoded
            except Exception as exc:
                reason, content = _read_error(exc), None
            else:
                yield digest, pixels
                return
            for path in paths:  # every file with this content is skipped, as the local tool does
                yield beam.pvalue.TaggedOutput("skipped", (path, reason, content))

    class DecodeList(beam.DoFn):
        """A list of (digest, paths) -> (digest, pixels) for each, decoded by this machine's worker processes
        (beam_decoding.py) with the local tool's check of each file's content; bad images go to 'skipped'."""

        def __init__(self, height: int, width: int, workers):
            self.height, self.width, self.workers = height, width, workers

        def process(self, elements):
            tasks = [FileTask(os.fsdecode(paths[0]), digest) for digest, paths in elements]
            decoder = FileDecoder(self.height, self.width)
            for (digest, paths), outcome in zip(elements, decode_list(decoder, self.height, self.width, self.workers,
                                                                      tasks)):
                if isinstance(outcome, str):
                    content = None if outcome == CHANGED_WHILE_READ else digest  # a changed file is tried again
                    for path in paths:
                        yield beam.pvalue.TaggedOutput("skipped", (path, outcome, content))
                else:
                    yield digest, outcome

    return HashFile, KeepUnknown, Decode, DecodeList


def _skipped_line(item) -> str:
    """One skipped image as a JSON line, named by data/names.py's rule; with the digest of its content where the
    content itself cannot be decoded, so that retrain.py skips that content instead of trying it again."""
    name, reason, digest = item
    record = {**name_fields(os.fsdecode(name)), "reason": reason}
    if digest is not None:
        record[UNDECODABLE_DIGEST] = digest
    return json.dumps(record, ensure_ascii=False)


# ----------------------------------------------------------------- the pipeline


def create_bottlenecks(image_dir, output_dir, module, bottleneck_dir=None, batch_size: int = 32, beam_args=(),
                       log=print, precision=None, decode_workers: str = AUTO) -> Outcome:
    """Run the pipeline over ``image_dir``, writing this run's shards and skipped record into ``output_dir``.

    On the local runner, a folder's images are decoded by worker processes where ``decode_workers`` (auto,
    threads, processes) chooses them (beam_decoding.py).

    With a bfloat16 ``precision`` (precision.Precision) the workers run the exported float32 network
    through oneDNN's bfloat16 rewrite, and the shards carry that precision in their module identity,
    as retrain.py's cache does; float32 keeps the module's own identity.
    """
    import apache_beam as beam
    import pyarrow as pa
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    from ..model.runner import with_precision

    image_dir, output_dir = str(image_dir), str(output_dir)
    local_paths = None
    if not is_url(image_dir):
        from ..data.walk import list_images

        # walk.py's own listing, with its rules for links, loops and hidden files; never the run's own outputs.
        places = (("--output_dir", output_dir), ("--bottleneck_dir", bottleneck_dir))
        outputs = [(flag, Path(path)) for flag, path in places if path is not None and not is_url(str(path))]
        local_paths = [os.fsencode(image.path) for c in list_images(image_dir, outputs).classes for image in c.images]
    if not is_url(output_dir):
        try:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create --output_dir '{output_dir}': {exc.strerror}.") from None
    keyed = with_precision(module, precision) if precision is not None else module
    cached = _cached_digests(bottleneck_dir, keyed)
    earlier = [path for path, _size in list_files(output_dir, SHARD_PATTERN)]
    model_uri = stage_model(module, output_dir, log)
    run = beam_common.run_id()
    shard_prefix, skipped_prefix = join(output_dir, f"bottlenecks-{run}"), join(output_dir, f"skipped-{run}")
    identity, dim = keyed.identity, module.bottleneck_size
    schema = pa.schema([("module", pa.string()), ("digest", pa.string()), ("vector", pa.list_(pa.float32()))])
    HashFile, KeepUnknown, Decode, DecodeList = _dofns()
    workers = None if local_paths is None else local_workers(beam_args, len(local_paths), decode_workers)
    handler = KeyedModelHandler(_model_handler_class()(model_uri, batch_size,
                                                                 getattr(precision, "name", None) == "bfloat16"))

    def build(p):
        if local_paths is None:
            listed = (p | "Sources" >> beam.Create([image_dir]) | "List images" >> beam.FlatMap(remote_images)
                      | "As bytes" >> beam.Map(os.fsencode))
        else:
            listed = p | "Sources" >> beam.Create(local_paths)
        listed = listed | "Spread" >> beam.Reshuffle()
        hashed = listed | "Hash" >> beam.ParDo(HashFile()).with_outputs("skipped", main="digests")
        known_sources = [p | "Cached keys" >> beam.Create(sorted(cached))]
        if earlier:
            known_sources.append(p | "Earlier shards" >> beam.Create(earlier)
                                 | "Their keys" >> beam.FlatMap(shard_digests, identity))
        known = (known_sources | "All known" >> beam.Flatten()
                 | "Mark known" >> beam.Map(lambda digest: (digest, True)))
        todo = ({"paths": hashed.digests, "known": known} | "By content" >> beam.CoGroupByKey()
                | "Drop known" >> beam.ParDo(KeepUnknown()))
        if workers is None:
            decode = beam.ParDo(Decode(module.height, module.width))
        else:
            todo = todo | "Gather" >> beam.BatchElements(min_batch_size=list_size(workers),
                                                         max_batch_size=list_size(workers))
            decode = beam.ParDo(DecodeList(module.height, module.width, workers))
        decoded = todo | "Decode" >> decode.with_outputs("skipped", main="pixels")
        computed = beam.metrics.Metrics.counter(NAMESPACE, "computed")

        def row(keyed):
            digest, prediction = keyed
            computed.inc()
            vector = np.asarray(prediction.inference, dtype=np.float32).reshape(dim)
            return {"module": identity, "digest": digest, "vector": vector.tolist()}

        (decoded.pixels | "Bottlenecks" >> RunInference(handler) | "Rows" >> beam.Map(row)
         | "Write shards" >> beam.io.WriteToParquet(shard_prefix, schema, file_name_suffix=".parquet"))
        skipped_count = beam.metrics.Metrics.counter(NAMESPACE, "skipped")

        def skipped_line(item):
            skipped_count.inc()
            return _skipped_line(item)

        ((hashed.skipped, decoded.skipped) | "All skipped" >> beam.Flatten()
         | "Skipped lines" >> beam.Map(skipped_line)
         | "Write skipped" >> beam.io.WriteToText(skipped_prefix, file_name_suffix=".jsonl", shard_name_template=""))

    try:
        result = beam_common.run_pipeline(build, beam_args, "bottleneck")
    finally:
        close_pools()
    counts = beam_common.counter_values(result, NAMESPACE)
    return Outcome(listed=counts.get("listed", 0), known=counts.get("already_known", 0),
                   computed=counts.get("computed", 0), skipped=counts.get("skipped", 0),
                   shards=f"{shard_prefix}-*.parquet", skipped_record=f"{skipped_prefix}.jsonl")


def _cached_digests(bottleneck_dir, module) -> set[str]:
    """Digests that the local cache already holds for ``module`` (none when there is no cache yet)."""
    if bottleneck_dir is None or is_url(bottleneck_dir) or not (Path(bottleneck_dir) / DB_NAME).is_file():
        return set()
    cache = BottleneckCache(bottleneck_dir, module.identity, module.bottleneck_size)
    try:
        return cache.stored_digests()
    finally:
        cache.close()


def read_skipped(output_dir) -> list[dict]:
    """Every skipped-image record in ``output_dir``: {"path", "reason"} per image, "path_bytes" for a name
    that is not UTF-8 (data/names.py), and "undecodable_digest" where the content cannot be decoded."""
    records = []
    for path, _size in list_files(output_dir, SKIPPED_PATTERN):
        records += [json.loads(line) for line in read_bytes(path).decode("utf-8").splitlines() if line.strip()]
    return records
