"""``python -m bottleneck``'s commands: prepare-model and beam-bottlenecks, and the table that names them.

(retrain.py and label_image.py are the other two commands.)
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from ..config.checks import check_range
from ..config.settings import POSITIVE, BottleneckSettings
from ..errors import EXIT_OK
from ..model.tf_import import quiet_tensorflow
from .beam_options import check_pipeline_options
from .guard import run_guarded, setup_logging
from .review import relabel_main, review_main


def beam_bottlenecks_main(argv) -> int:
    """``python -m bottleneck beam-bottlenecks``: compute bottlenecks as an Apache Beam pipeline, into shards.

    The flags that this parser does not know are Beam's pipeline options (--runner, --project, ...).
    """
    defaults = BottleneckSettings()
    fields = {f.name: f for f in dataclasses.fields(BottleneckSettings)}
    p = argparse.ArgumentParser(
        prog="python -m bottleneck beam-bottlenecks",
        description="Compute bottlenecks with Apache Beam (this machine by default; Dataflow, Flink or Spark with "
                    "Beam's --runner options) and write them as Parquet shards that retrain.py imports.",
        epilog="Every other flag is a Beam pipeline option (--runner, --project, --temp_location, ...). Exit codes: "
               "0 done (skipped images are listed in the skipped record), 2 usage or input error, 1 other failure.",
    )
    p.add_argument("--image_dir", required=True, help="Folder (or gs://, s3://, hdfs:// URL) of class folders.")
    p.add_argument("--output_dir", default=None,
                   help="Where the shards go (default: <bottleneck_dir>/shards, where retrain.py finds them).")
    p.add_argument("--bottleneck_dir", default=str(defaults.bottleneck_dir),
                   help="retrain.py's bottleneck cache: the images it already holds are not computed again "
                        f"(default: {defaults.bottleneck_dir})")
    for name in ("tfhub_module", "bottleneck_layer", "model_dir", "extraction_batch_size"):
        default, field = getattr(defaults, name), fields[name]
        p.add_argument(f"--{name}", default=default, type=type(default) if isinstance(default, int) else str,
                       help=f"As for retrain.py: {field.metadata['help']} (default: {default})",
                       **field.metadata["argparse"])
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="Arithmetic of the network on the workers: auto (bfloat16 where this machine computes it "
                        "natively, as retrain.py decides, for runs on this machine), float32 (any worker), or "
                        "bfloat16 (name it for a cluster whose workers compute it natively). retrain.py uses the "
                        "shards when it runs at the same precision (default: auto)")
    args, beam_args = p.parse_known_args(argv)
    setup_logging("INFO")
    quiet_tensorflow("WARN")
    log = logging.getLogger("retrain").info

    def body():
        from ..cache.shards import default_folder
        from ..data.storage import is_url
        from ..data.walk import list_images
        from ..model.modules import load_module
        from ..model.precision import network_precision
        from ..scale_out.beam_bottlenecks import create_bottlenecks

        check_pipeline_options(beam_args, [opt for action in p._actions for opt in action.option_strings],
                               "beam-bottlenecks")

        check_range("extraction_batch_size", args.extraction_batch_size, POSITIVE,
                    "--{flag} must be a positive number.")
        output_dir = args.output_dir or default_folder(args.bottleneck_dir)
        if not is_url(args.image_dir):  # a missing or unusable folder is reported before the model loads
            outputs = [(flag, Path(path)) for flag, path in (("--output_dir", output_dir),
                                                             ("--bottleneck_dir", args.bottleneck_dir))
                       if not is_url(str(path))]
            list_images(args.image_dir, outputs)
        module = load_module(args.tfhub_module, Path(args.model_dir), log=log, top_block=args.bottleneck_layer)
        precision = network_precision(args.precision)
        outcome = create_bottlenecks(args.image_dir, output_dir, module, args.bottleneck_dir,
                                     args.extraction_batch_size, beam_args, log, precision)
        print(f"{outcome.listed} images listed, {outcome.known} already computed, {outcome.computed} bottlenecks "
              f"computed, {outcome.skipped} skipped.")
        print(f"Shards: {outcome.shards}")
        if outcome.skipped:
            print(f"Skipped images and why: {outcome.skipped_record}")
        return EXIT_OK

    return run_guarded("beam-bottlenecks", body)


def prepare_model_main(argv) -> int:
    """``python -m bottleneck prepare-model [--model_dir DIR]``: obtain and convert the built-in model now, or again
    where the converted weights are damaged."""
    from ..model.weights import default_model_dir, ensure_weights

    parser = argparse.ArgumentParser(prog="python -m bottleneck prepare-model",
                                     description="Obtain and convert the built-in Inception-v3 weights (once).")
    parser.add_argument("--model_dir", default=str(default_model_dir()))
    args = parser.parse_args(argv)

    def body():
        print(f"Built-in Inception-v3 ready: {ensure_weights(args.model_dir, repair=True)}")  # damaged: again
        return EXIT_OK

    return run_guarded("prepare-model", body)


COMMANDS = {"prepare-model": prepare_model_main, "beam-bottlenecks": beam_bottlenecks_main, "review": review_main,
            "relabel": relabel_main}
