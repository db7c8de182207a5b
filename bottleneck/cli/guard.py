"""The guarded run that every command shares: logging, SIGTERM as Ctrl-C, errors to one sentence and an exit code,
and one temporary folder per run.

Libraries leave temporary files behind (Beam's empty ``beam-temp*`` and
``beam-pipeline-temp*`` folders, TensorFlow's ``__autograph_generated_file*.py``
from each SavedModel or TFLite export), so a nightly job would slowly fill the
temporary folder.  Each command therefore runs with ``tempfile.tempdir`` and
``TMPDIR`` (which worker processes inherit) pointing at a folder of its own,
``retrain-run-*`` in the usual temporary folder, removed with everything in it
when the command ends: done, failed, Ctrl-C or SIGTERM.  Only SIGKILL leaves it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading

from ..errors import EXIT_FAILURE, Terminated, UserError


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


@contextlib.contextmanager
def run_temp_folder():
    """Point ``tempfile`` and ``TMPDIR`` at a new folder for the block, and remove the folder after it."""
    before, environment = tempfile.tempdir, os.environ.get("TMPDIR")
    try:
        folder = tempfile.mkdtemp(prefix="retrain-run-")
    except OSError:  # the temporary folder refuses new folders: a library will say so if it needs one
        yield None
        return
    tempfile.tempdir = os.environ["TMPDIR"] = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = before
        if environment is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = environment
        shutil.rmtree(folder, ignore_errors=True)


def run_guarded(prog: str, body) -> int:
    """Run ``body()`` in a temporary folder of its own; a UserError becomes one sentence on stderr and its exit
    code."""
    try:
        with sigterm_unwinds(), run_temp_folder():
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
