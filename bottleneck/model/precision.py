"""Which arithmetic runs the network: float32, bfloat16 or int8, and why.

``auto`` (the default) picks bfloat16 only where the hardware computes it
natively -- a CPU with the ``avx512_bf16`` or ``amx_bf16`` flag -- and float32
everywhere else, GPUs included (see ``native_bfloat16``).  It never picks
int8: that stays a choice the user makes.

The flags say what the processor could do, not what TensorFlow does: its
oneDNN rewrite runs only where TensorFlow itself decides the processor can
take it (oneDNN built in and switched on, the network on the CPU, a processor
TensorFlow deems able).  So ``precision_here`` checks once per process that
the rewrite really changes a small probe computation
(``bfloat16_rewrite_runs``); where it does not, bfloat16 is not what would
run, and float32 runs under float32's own cache identity, with a warning
where bfloat16 was asked for.

bfloat16 is applied by oneDNN's automatic mixed precision, a Grappler rewrite
of the graphs that TensorFlow runs (``auto_mixed_precision_onednn_bfloat16``).
The option is read whenever a function is run, so it is switched on only
around the network's own calls (``bfloat16_scope``): training the new layer
and the exports stay float32.  int8 runs a quantized copy of the feature
extractor through TensorFlow Lite (see int8.py).

This module imports no TensorFlow at import time, so the choice can be made
and tested without it.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, first_line

FLOAT32 = "float32"
PRECISIONS = ("auto", FLOAT32, "bfloat16", "int8")
DEFAULT_PRECISION = "auto"
# CPU flags (as /proc/cpuinfo names them) of instructions that compute bfloat16 natively.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# NVIDIA Ampere (8.0) and later compute bfloat16 in their tensor cores.
NATIVE_BFLOAT16_GPU = (8, 0)
_CPUINFO = Path("/proc/cpuinfo")

log = logging.getLogger("retrain")


@dataclass(frozen=True)
class Precision:
    name: str  # float32, bfloat16 or int8: what actually runs
    reason: str  # why, in words for the log
    # False: not what was asked for at full speed -- bfloat16 emulated by hardware without it, or bfloat16
    # asked for where it does not run at all, so float32 runs instead; either way the log says so as a warning.
    native: bool = True

    @property
    def cache_suffix(self) -> str:
        """What the cache identity gains: nothing for float32, so caches filled before stay valid."""
        return "" if self.name == "float32" else f"|precision:{self.name}"


def cpu_flags(cpuinfo: Path = _CPUINFO) -> frozenset[str]:
    """The flags the processor reports (empty where /proc/cpuinfo does not exist, e.g. macOS)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 and Arm spell it differently
            flags.update(value.split())
    return frozenset(flags)


def gpu_capabilities() -> list[tuple[int, int]]:
    """Compute capability of each visible GPU ((0, 0) where TensorFlow does not say)."""
    import tensorflow as tf

    capabilities = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            capabilities.append(tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability",
                                                                                      (0, 0))))
        except (ValueError, RuntimeError):
            capabilities.append((0, 0))
    return capabilities


def native_bfloat16(flags: frozenset[str], gpus: list[tuple[int, int]]) -> tuple[bool, str]:
    """Whether bfloat16 would run natively here, and why (or why not) in words.

    With GPUs the network runs on them, and the rewrite used here (oneDNN's)
    changes CPU operations only: TensorFlow's GPU rewrite makes float16, not
    bfloat16.  So even a GPU of capability 8.0 or higher, whose tensor cores
    compute bfloat16, gets float32 from ``auto`` until a GPU bfloat16 path is
    built and measured.
    """
    if gpus:
        best = max(tuple(c) for c in gpus)
        if best >= NATIVE_BFLOAT16_GPU:
            return False, (f"the network runs on the GPU (compute capability {best[0]}.{best[1]}), where the "
                           "oneDNN bfloat16 rewrite does not apply")
        return False, f"the network runs on the GPU (compute capability {best[0]}.{best[1]}, no native bfloat16)"
    found = [flag for flag in NATIVE_BFLOAT16_FLAGS if flag in flags]
    if found:
        return True, f"the processor has {' and '.join(found)}"
    return False, "the processor has neither avx512_bf16 nor amx_bf16"


def choose(requested: str, flags: frozenset[str] | None = None,
           gpus: list[tuple[int, int]] | None = None) -> Precision:
    """The precision to run for ``requested`` (one of PRECISIONS) on this hardware.

    ``flags`` and ``gpus`` default to this machine's; tests pass their own.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}")
    if requested == "int8":
        return Precision("int8", "asked for (--precision int8): a quantized copy of the network run by TensorFlow "
                                 "Lite")
    if requested == "float32":
        return Precision("float32", "asked for (--precision float32)")
    flags = cpu_flags() if flags is None else flags
    gpus = gpu_capabilities() if gpus is None else gpus
    native, why = native_bfloat16(flags, gpus)
    if requested == "bfloat16":
        if native:
            return Precision("bfloat16", f"asked for (--precision bfloat16); {why}")
        return Precision("bfloat16", f"asked for (--precision bfloat16), but {why}: it is emulated and likely "
                                     "slower than float32", native=False)
    if native:
        return Precision("bfloat16", f"auto: {why}")
    return Precision("float32", f"auto: {why}")


def describe(precision: Precision) -> str:
    """One log line saying which precision runs and why."""
    return f"Running the network in {precision.name}: {precision.reason}."


def precision_here(requested: str, flags: frozenset[str] | None = None, gpus: list[tuple[int, int]] | None = None,
                   rewrite_runs: bool | None = None) -> Precision:
    """choose(), kept only where it is true: bfloat16 where the rewrite really runs here, float32 elsewhere.

    ``rewrite_runs`` defaults to this process's ``bfloat16_rewrite_runs()``,
    probed only when bfloat16 is on the table; tests pass their own.  Where the
    rewrite does not run, the network would compute float32 anyway, so it runs
    as float32, under float32's cache identity, and its vectors serve float32 runs.
    """
    flags = cpu_flags() if flags is None else flags
    gpus = gpu_capabilities() if gpus is None else gpus
    chosen = choose(requested, flags, gpus)
    if chosen.name != "bfloat16":
        return chosen
    if bfloat16_rewrite_runs() if rewrite_runs is None else rewrite_runs:
        return chosen
    _native, why = native_bfloat16(flags, gpus)
    if requested == "auto":
        return Precision(FLOAT32, f"auto: {why}, but oneDNN's bfloat16 rewrite does not change what this "
                                  "TensorFlow computes")
    return Precision(FLOAT32, f"asked for bfloat16 (--precision bfloat16), but bfloat16 does not run here ({why}, "
                              "and oneDNN's bfloat16 rewrite does not change what this TensorFlow computes), so "
                              "float32 runs and its vectors are cached as float32's", native=False)


def network_precision(requested: str, flags: frozenset[str] | None = None,
                      gpus: list[tuple[int, int]] | None = None, rewrite_runs: bool | None = None) -> Precision:
    """precision_here(), and say in the log which precision runs and why (a warning where it is not as asked)."""
    chosen = precision_here(requested, flags, gpus, rewrite_runs)
    (log.info if chosen.native else log.warning)(describe(chosen))
    return chosen


_option_lock = threading.Lock()
_BFLOAT16_OPTION = "auto_mixed_precision_onednn_bfloat16"


@contextlib.contextmanager
def bfloat16_scope(enabled: bool = True):
    """Run the TensorFlow functions called inside with oneDNN's bfloat16 rewrite.

    The rewrite is a process-wide Grappler option, read when a function runs
    (an instantiation is cached per setting), so it is set on entry and
    restored on exit; the lock keeps two threads from interleaving.
    """
    if not enabled:
        yield
        return
    import tensorflow as tf

    with _option_lock:
        before = tf.config.optimizer.get_experimental_options().get(_BFLOAT16_OPTION, False)
        tf.config.optimizer.set_experimental_options({_BFLOAT16_OPTION: True})
        try:
            yield
        finally:
            tf.config.optimizer.set_experimental_options({_BFLOAT16_OPTION: before})


@functools.cache
def bfloat16_rewrite_runs() -> bool:
    """Whether oneDNN's bfloat16 rewrite really changes what TensorFlow computes here; probed once per process.

    A small convolution runs with and without the rewrite, on the device the
    network would use: bfloat16 keeps 8 bits of each random input's 24, so
    where the rewrite runs the two results differ, and where TensorFlow skips it
    (no oneDNN, a processor it deems unable, a GPU) they are equal to the bit.
    A rewrite that fails on missing kernels counts as not running.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    images = tf.constant(rng.random((1, 8, 8, 16), dtype=np.float32))
    kernel = tf.constant(rng.random((3, 3, 16, 16), dtype=np.float32))

    def probe(x):  # x is an argument, not a constant, so Grappler cannot fold the convolution away
        return tf.nn.conv2d(x, kernel, 1, "SAME")

    plain = tf.function(probe, autograph=False)(images).numpy()
    try:
        with bfloat16_scope():
            rewritten = tf.function(probe, autograph=False)(images).numpy()
    except (tf.errors.NotFoundError, tf.errors.UnimplementedError, tf.errors.InternalError):
        return False
    return not np.array_equal(plain, rewritten)


class InPrecision:
    """A TensorFlow callable run inside ``bfloat16_scope`` when the precision is bfloat16.

    Should a processor lack the bfloat16 kernels that the rewrite asks for, the
    run stops with one sentence (exit code 2) instead of a traceback.
    """

    def __init__(self, fn, precision: Precision):
        self.fn, self.precision = fn, precision

    def __call__(self, *args):
        if self.precision.name != "bfloat16":
            return self.fn(*args)
        import tensorflow as tf

        with bfloat16_scope():
            try:
                return self.fn(*args)
            except (tf.errors.NotFoundError, tf.errors.UnimplementedError, tf.errors.InternalError) as exc:
                first = first_line(exc).rstrip(".")
                raise UserError(f"This machine cannot run the network in bfloat16 ({first}); use --precision auto "
                                "or float32.") from None
