"""What the two Apache Beam pipelines share: runner defaults, model staging, counters.

With no ``--runner`` the pipelines run on Beam's DirectRunner inside this
process, on every core, with no server and no network.  The runner is named
explicitly because recent Beam releases otherwise first try to download their
Prism runner binary, which fails offline.  Any standard Beam option
(``--runner DataflowRunner``, ``FlinkRunner``, ``SparkRunner``, ``--project``,
``--temp_location``, ...) is passed through untouched, once the commands have
made sure that Beam knows it (cli/beam_options.py).

Files are read and written through data/storage.py, so every path may be a
local path or a ``gs://``, ``s3://`` or ``hdfs://`` URL where Beam's extras
for it are installed.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from pathlib import Path

from ..data.storage import copy_folder, exists, join, write_bytes
from ..errors import UserError, last_line

# DirectRunner on threads: TensorFlow and PIL release the GIL, so decoding and the network share
# the cores the way the local tool's thread pool does, with one copy of the model in memory.
LOCAL_RUNNER_ARGS = ("--runner=DirectRunner", "--direct_running_mode=multi_threading")
_IRRELEVANT_WARNINGS = ("apitools not found", "Resource module is not available")
_DONE = "_COMPLETE"  # written last into a staged model folder: a folder without it is not trusted


def pipeline_options(beam_args):
    """PipelineOptions from the user's Beam flags, on the local runner unless one is named."""
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args)
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args = [*LOCAL_RUNNER_ARGS, f"--direct_num_workers={os.cpu_count() or 1}", *args]
    return PipelineOptions(args)


def quiet_beam_logging() -> None:
    """Keep Beam's per-worker INFO chatter out of the tool's output."""
    for name in ("apache_beam", "root"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Beam warns that Google Cloud client libraries are absent (optional here), and RunInference that it
    # cannot measure memory without PyTorch: neither matters to the user.
    logging.getLogger().addFilter(
        lambda record: not any(text in record.getMessage() for text in _IRRELEVANT_WARNINGS))


def run_id() -> str:
    """A name prefix that sorts by start time and never repeats, so a re-run never overwrites earlier outputs."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def stage_folder(local: Path, dest: str) -> None:
    """Copy a local folder to ``dest`` (local or a URL), marking it complete last."""
    copy_folder(local, dest)
    write_bytes(join(dest, _DONE), b"")


def is_staged(dest: str) -> bool:
    return exists(join(dest, _DONE))


def counter_values(result, namespace: str) -> dict[str, int]:
    """The committed (or, where a runner has none, attempted) counters of a finished pipeline."""
    from apache_beam.metrics.metric import MetricsFilter

    values: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]:
        try:
            value = counter.committed
        except Exception:  # some runners report attempted values only
            value = None
        values[counter.key.metric.name] = values.get(counter.key.metric.name, 0) + int(
            value if value is not None else counter.attempted or 0)
    return values


def short_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def run_pipeline(build, beam_args, what: str):
    """Build a pipeline with ``build(pipeline)``, run it to the end and return its result.

    A failure on the workers becomes one sentence (its last line), not Beam's nested traceback.
    """
    import apache_beam as beam

    quiet_beam_logging()
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build(pipeline)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except UserError:
        raise
    except Exception as exc:
        reason = (last_line(str(exc)) if str(exc).strip() else type(exc).__name__).rstrip(".")
        raise UserError(f"The {what} pipeline failed: {reason}.", exit_code=1) from exc
    return result
