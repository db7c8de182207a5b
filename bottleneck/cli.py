"""Process-level concerns of the two commands: logging, TensorFlow's noise, errors to exit codes."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

from .errors import EXIT_FAILURE, EXIT_USAGE, UserError

_TF_LOG_LEVEL = {"DEBUG": "0", "INFO": "2", "WARN": "2", "ERROR": "2", "FATAL": "3"}


def quiet_tensorflow(verbosity: str = "INFO") -> None:
    """Import TensorFlow without its start-up chatter (CUDA probes and the like) unless DEBUG is asked for.

    Some of those lines are written by native code straight to file descriptor 2
    before TensorFlow's own log level applies, so stderr is parked in a
    temporary file while TensorFlow loads and looks for devices.  What it said
    is replayed when the import fails or when --logging_verbosity=DEBUG.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _TF_LOG_LEVEL.get(verbosity, "2"))
    if "tensorflow" in sys.modules:
        return
    with parked_stderr(replay=verbosity == "DEBUG"):
        import tensorflow as tf

        tf.get_logger().setLevel(logging.DEBUG if verbosity == "DEBUG" else logging.ERROR)
        gpus = tf.config.list_physical_devices("GPU")  # the CUDA probe also speaks here
    log = logging.getLogger("retrain")
    if gpus:  # TensorFlow places the network on the first GPU by itself; say that it will
        log.info("Using GPU: %s", ", ".join(gpu.name for gpu in gpus))
    else:
        log.debug("TensorFlow %s; no GPU found, using the CPU.", tf.__version__)


@contextlib.contextmanager
def parked_stderr(replay: bool = False):
    """Park file descriptor 2 in a temporary file while native code chats.

    What was said is replayed when the block fails, or always with ``replay``.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed or replay:
                parked.seek(0)
                sys.stderr.write(parked.read().decode("utf-8", "replace"))


def setup_logging(verbosity: str) -> None:
    level = {"WARN": logging.WARNING, "FATAL": logging.CRITICAL}.get(verbosity, getattr(logging, verbosity, logging.INFO))
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


def run_guarded(prog: str, body) -> int:
    """Run ``body()``; a UserError becomes one sentence on stderr and its exit code."""
    try:
        return body()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except MemoryError:
        print(f"{prog}: error: ran out of memory.", file=sys.stderr)
        return EXIT_FAILURE


def retrain_main(argv) -> int:
    from .config import build_parser, config_from_args

    args = build_parser().parse_args(argv)
    verbosity = "WARN" if args.quiet and args.logging_verbosity in ("DEBUG", "INFO") else args.logging_verbosity
    setup_logging(verbosity)
    quiet_tensorflow(verbosity)

    def body():
        config = config_from_args(args)
        from .pipeline import run

        return run(config)

    return run_guarded("retrain.py", body)


def label_image_main(argv) -> int:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    from .classify import build_parser, run

    args = build_parser().parse_args(argv)
    setup_logging("WARN")
    quiet_tensorflow("WARN")
    return run_guarded("label_image.py", lambda: run(args))


__all__ = ["retrain_main", "label_image_main", "EXIT_USAGE"]
