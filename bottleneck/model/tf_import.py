"""Import TensorFlow quickly, and keep its and TFLite's native chatter off the user's terminal.

Native code writes straight to file descriptor 2, past Python's logging, so
the only way to hold it back is to park that descriptor while it talks.
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import sys
import tempfile
import warnings

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
    with parked_stderr(replay=verbosity == "DEBUG"), without_eager_keras(), long_lived_objects():
        import tensorflow as tf

        tf.get_logger().setLevel(logging.DEBUG if verbosity == "DEBUG" else logging.ERROR)
        gpus = tf.config.list_physical_devices("GPU")  # the CUDA probe also speaks here
    log = logging.getLogger("retrain")
    if gpus:  # TensorFlow places the network on the first GPU by itself; say that it will
        log.info("Using GPU: %s", ", ".join(gpu.name for gpu in gpus))
    else:
        log.debug("TensorFlow %s; no GPU found, using the CPU.", tf.__version__)


@contextlib.contextmanager
def long_lived_objects():
    """Make objects that live as long as the process, such as a large library's modules, cheap for the collector.

    TensorFlow's import makes a few hundred thousand objects and hardly any
    garbage, yet Python's cyclic collector would walk them all several times
    while they are made, and again in every later full collection, which
    stops the thread that feeds the network.  So collection waits until the
    block ends, and then ``gc.freeze`` moves everything made so far out of the
    collector's sight for good.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


# TensorFlow's __init__ imports Keras' optimizers eagerly, a third of its own import time, only so that Keras
# classes are registered before a Keras-saved SavedModel is loaded.  It guards that import with
# `except ImportError`, so a module marked absent in sys.modules is skipped.  The built-in network never needs
# Keras; fine-tuning's tf.keras and TF-Hub import it normally on first use, because the mark is removed at once.
_EAGER_KERAS_IMPORTS = ("keras.src.optimizers", "tf_keras.src.optimizers")


@contextlib.contextmanager
def without_eager_keras():
    """While TensorFlow is imported inside this block, it skips its eager import of Keras' optimizers."""
    marked = [name for name in _EAGER_KERAS_IMPORTS if name not in sys.modules]
    for name in marked:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in marked:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]


def keras_registrations() -> None:
    """What TensorFlow's import would have done eagerly: Keras' classes registered for SavedModel loading.

    Called before loading a SavedModel that may have been saved by Keras (a
    TF-Hub module or the user's own), so it loads exactly as TensorFlow
    imported the usual way would load it.
    """
    legacy = os.environ.get("TF_USE_LEGACY_KERAS", None) in ("true", "True", "1")
    with contextlib.suppress(ImportError, AttributeError):  # TensorFlow's own guard; a missing Keras is fine
        importlib.import_module(_EAGER_KERAS_IMPORTS[1] if legacy else _EAGER_KERAS_IMPORTS[0])


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


def make_interpreter(model: bytes, num_threads: int | None = None):
    """tf.lite.Interpreter for the model's bytes, without its deprecation notice and native chatter."""
    import tensorflow as tf

    with warnings.catch_warnings(), parked_stderr():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's notice that it moves to ai_edge_litert
        return tf.lite.Interpreter(model_content=model, num_threads=num_threads or os.cpu_count() or 1)
