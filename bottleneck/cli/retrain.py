"""The command line of retrain.py and label_image.py: flags, logging, errors to exit codes.

retrain.py's flags are built from ``settings.py``, group by group, so their
defaults and help texts are written once, there.  Flag names, meanings and
defaults follow the last classic TensorFlow-Hub ``retrain.py`` (and its
predecessor's ``--architecture``), so command lines that people already have
keep working.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ..config.checks import check_numbers, check_outputs, check_values
from ..config.settings import PRESETS, RetrainConfig, settings_fields, validate, with_flags
from ..errors import EXIT_FAILURE, EXIT_OK, Terminated, UserError
from ..model.modules import BUILTIN_MODULE
from ..model.tf_import import quiet_tensorflow

# The older script's --architecture names, mapped to the module they meant.
ARCHITECTURES = {
    "inception_v3": BUILTIN_MODULE,
}
for _version, _hub in (("1.0", "100"), ("0.75", "075"), ("0.50", "050"), ("0.25", "025")):
    for _size in (224, 192, 160, 128):
        ARCHITECTURES[f"mobilenet_{_version}_{_size}"] = (
            f"https://tfhub.dev/google/imagenet/mobilenet_v1_{_hub}_{_size}/feature_vector/1"
        )

_TYPES = {"int": int, "float": float, "str": str}


def build_parser() -> argparse.ArgumentParser:
    """retrain.py's flags, one argument group per settings group.

    No flag has an argparse default: only the flags given end up in the
    namespace, so that a --preset can fill in the rest before the defaults do.
    """
    p = argparse.ArgumentParser(
        prog="retrain.py",
        description="Retrain the top layer of a pre-trained image network on your own classes.",
        epilog="Exit codes: 0 success, 2 usage or input error, 1 other failure.",
        argument_default=argparse.SUPPRESS,
    )
    defaults = RetrainConfig()
    presettable = {flag for values in PRESETS.values() for flag in values}
    groups = {}
    for group, field, flag in settings_fields():
        if group not in groups:
            groups[group] = p.add_argument_group(type(getattr(defaults, group)).__doc__)
        default = getattr(getattr(defaults, group), field.name)
        help_text = field.metadata["help"]
        computed = field.default_factory is not dataclasses.MISSING  # depends on the machine: the help says how
        if not (computed or default is None or default is False or default == ""):
            help_text += f" (default: {default}" + (", or the --preset's)" if flag in presettable else ")")
        options = dict(field.metadata["argparse"])
        if field.type == "bool":
            options["action"] = "store_true"
        else:
            options.setdefault("type", _TYPES.get(field.type.split(" | ")[0], str))
        groups[group].add_argument(f"--{flag}", help=help_text, **options)
        if flag == "tfhub_module":
            groups[group].add_argument(
                "--architecture", help="Older name for the module choice: 'inception_v3' or "
                "'mobilenet_<1.0|0.75|0.50|0.25>_<size>'.")
        if flag == "how_many_training_steps":
            groups[group].add_argument(
                "--preset", choices=sorted(PRESETS),
                help="A measured combination of the training options and --bottleneck_layer; flags given "
                "explicitly still win.")
    return p


def config_from_args(args: argparse.Namespace) -> RetrainConfig:
    """Turn parsed flags into the checked configuration; raises UserError for inconsistent values."""
    given = dict(vars(args))
    preset = dict(PRESETS[given.pop("preset", "classic")])
    architecture = given.pop("architecture", None)
    if architecture:
        if architecture not in ARCHITECTURES:
            raise UserError(
                f"Unknown --architecture '{architecture}'; use inception_v3 or mobilenet_<version>_<size>, "
                "or name a module with --tfhub_module."
            )
        if given.get("tfhub_module", ARCHITECTURES[architecture]) != ARCHITECTURES[architecture]:
            raise UserError("--architecture and --tfhub_module name different modules; give only one.")
        given["tfhub_module"] = ARCHITECTURES[architecture]
    if given.get("tfhub_module", BUILTIN_MODULE) != BUILTIN_MODULE:
        preset.pop("bottleneck_layer", None)  # a preset's block has no meaning for another network
    types = {flag: field.type for _group, field, flag in settings_fields()}
    for flag, value in given.items():
        if "Path" in types[flag]:  # an empty optional path means "not asked for"
            given[flag] = Path(value) if value else None
    config = with_flags(RetrainConfig(), {**preset, **given})
    # Every check before any work: nan and inf first (the range checks would pass them), then the ranges,
    # the values the engine relies on, and every output location.
    check_numbers(config.flags())
    validate(config)
    check_values(config)
    check_outputs(config)
    return config


def setup_logging(verbosity: str) -> None:
    named = {"WARN": logging.WARNING, "FATAL": logging.CRITICAL}
    level = named.get(verbosity, getattr(logging, verbosity, logging.INFO))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    ours = logging.getLogger("retrain")
    ours.handlers[:] = [handler]
    ours.setLevel(level)
    # A library calling logging.warning() on the root logger would otherwise install a default
    # root handler mid-run and print each of our lines twice.
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.NullHandler())


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_unwinds():
    """SIGTERM raises Terminated (a KeyboardInterrupt), so it cleans up exactly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_guarded(prog: str, body) -> int:
    """Run ``body()``; a UserError becomes one sentence on stderr and its exit code."""
    try:
        with sigterm_unwinds():
            return body()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print(f"{prog}: terminated.", file=sys.stderr)
        return Terminated.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except MemoryError:
        print(f"{prog}: error: ran out of memory.", file=sys.stderr)
        return EXIT_FAILURE


def exit_skipping_teardown(code: int):
    """End a command's process with ``code`` without Python's teardown of the interpreter.

    Tearing down a process that holds TensorFlow and a large network takes longer
    than exporting the graph.  Nothing needs it: every file a command writes is
    closed when its main returns (outputs renamed into place, the cache's
    database, TensorBoard's writers), so only the log and the standard streams
    are flushed here.  For the scripts' ``__main__`` only; code that calls
    ``retrain_main`` in its own process keeps its interpreter.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, a stream already closed
            pass
    os._exit(code)


def retrain_main(argv) -> int:
    args = build_parser().parse_args(argv)
    verbosity = getattr(args, "logging_verbosity", "INFO")
    if getattr(args, "quiet", False) and verbosity in ("DEBUG", "INFO"):
        verbosity = "WARN"
    setup_logging(verbosity)
    quiet_tensorflow(verbosity)

    def body():
        config = config_from_args(args)
        from ..pipeline import retrain
        from ..report.console import human_summary

        summary = retrain(config).summary
        # The short human summary is the command's result: stdout, even with --quiet.
        for line in human_summary(summary):
            print(line)
        return EXIT_OK

    return run_guarded("retrain.py", body)


def label_image_main(argv) -> int:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    from ..label_image.engine import build_parser as build_label_image_parser
    from ..label_image.engine import run

    parser = build_label_image_parser()
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and not args.beam_output:  # other flags are Beam's pipeline options, with --beam_output only
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    args.beam_args = beam_args
    setup_logging("WARN")
    quiet_tensorflow("WARN")
    if args.beam_output:
        from ..scale_out.beam_classify import classify_to_shards

        return run_guarded("label_image.py", lambda: classify_to_shards(args))
    return run_guarded("label_image.py", lambda: run(args))


def beam_bottlenecks_main(argv) -> int:
    """``python -m bottleneck beam-bottlenecks``: compute bottlenecks as an Apache Beam pipeline, into shards.

    The flags that this parser does not know are Beam's pipeline options (--runner, --project, ...).
    """
    import dataclasses

    from ..config.settings import BottleneckSettings

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

        if args.extraction_batch_size <= 0:
            raise UserError("--extraction_batch_size must be a positive number.")
        if not is_url(args.image_dir):
            list_images(args.image_dir)  # a missing or unusable folder is reported before the model loads
        module = load_module(args.tfhub_module, Path(args.model_dir), log=log, top_block=args.bottleneck_layer)
        precision = network_precision(args.precision)
        output_dir = args.output_dir or default_folder(args.bottleneck_dir)
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
    """``python -m bottleneck prepare-model [--model_dir DIR]``: obtain and convert the built-in model now."""
    from ..model.weights import default_model_dir, ensure_weights

    parser = argparse.ArgumentParser(prog="python -m bottleneck prepare-model",
                                     description="Obtain and convert the built-in Inception-v3 weights (once).")
    parser.add_argument("--model_dir", default=str(default_model_dir()))
    args = parser.parse_args(argv)

    def body():
        print(f"Built-in Inception-v3 ready: {ensure_weights(args.model_dir)}")
        return EXIT_OK

    return run_guarded("prepare-model", body)
