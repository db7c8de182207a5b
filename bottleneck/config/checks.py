"""Checks of retrain.py's settings that run before any work starts.

Every check raises ``UserError`` (one sentence, exit code 2), so a mistyped
flag or an output path that cannot be written costs seconds, not the hour of
bottlenecks that would come before the failure:

- ``check_numbers``: every float flag is a finite number (``nan`` and ``inf``
  are refused: a NaN learning rate would train and export a NaN model);
- ``check_values``: the values the engine relies on (seed, tensor name,
  batch sizes);
- ``check_outputs``: every output location can be written, no two outputs
  share one path, and nothing that is in the way (a file where a folder must
  go, a folder where a file must go) is discovered after training.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

from ..errors import UserError

# TensorFlow's rule for op names (tensorflow/core/framework/node_def_util.cc), without '/' (a name scope).
_OP_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-]*")
# Names the exported graph already uses for its own nodes.
RESERVED_TENSOR_NAMES = ("Placeholder", "bottleneck", "final_weights", "final_biases")
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds both accept this range


def check_numbers(values: dict) -> None:
    """Every float in ``values`` (flag -> value) must be a finite number (checked before the range checks,
    which nan would pass)."""
    for flag, value in sorted(values.items()):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{flag} must be a finite number, got {value}.")


def check_values(config) -> None:
    """The settings the engine relies on, checked before anything is read or computed."""
    seed = config.training.seed
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"--random_seed must be between 0 and {MAX_SEED}, got {seed}.")
    name = config.export.final_tensor_name
    if not _OP_NAME.fullmatch(name):
        raise UserError(
            f"--final_tensor_name {name!r} is not a valid tensor name: use letters, digits, '_', '.' and '-', "
            "starting with a letter, digit or '.'."
        )
    if name in RESERVED_TENSOR_NAMES:
        raise UserError(f"--final_tensor_name '{name}' is already the name of another tensor of the exported graph; "
                        "choose another name.")
    training = config.training
    for flag, value in (("train_batch_size", training.batch_size),
                        ("validation_batch_size", training.validation_batch_size),
                        ("test_batch_size", training.test_batch_size)):
        if value == 0 or value < -1:
            raise UserError(f"--{flag} must be a positive number, or -1 for the whole set, got {value}.")
    if config.export.intermediate_store_frequency < 0:
        raise UserError("--intermediate_store_frequency must be 0 (no intermediate graphs) or a positive number of "
                        f"steps, got {config.export.intermediate_store_frequency}.")


def check_outputs(config) -> None:
    """Every output location can be written and no two outputs share one path."""
    export = config.export
    files = {
        "--output_graph": export.output_graph,
        "--output_labels": export.output_labels,
        "--checkpoint_path": Path(f"{export.checkpoint_path}.index"),
    }
    if export.tflite_output:
        files["--tflite_output"] = export.tflite_output
    folders = {
        "--bottleneck_dir": config.bottlenecks.bottleneck_dir,
        "--summaries_dir": config.report.summaries_dir,
        "--report_dir": config.report_dir,
    }
    if export.saved_model_dir:
        folders["--saved_model_dir"] = export.saved_model_dir
    if export.intermediate_store_frequency:
        folders["--intermediate_output_graphs_dir"] = export.intermediate_output_graphs_dir

    where = {flag: _absolute(path) for flag, path in {**files, **folders}.items()}
    seen: dict[str, str] = {}
    for flag in files:
        if where[flag] in seen:
            raise UserError(f"{seen[where[flag]]} and {flag} name the same file '{files[flag]}'; "
                            "give each output its own path.")
        seen[where[flag]] = flag
    for flag, folder in folders.items():
        clash = seen.get(where[flag])
        if clash:
            raise UserError(f"{clash} and {flag} name the same path '{folder}'; give each output its own path.")
    if "--saved_model_dir" in folders:  # replaced whole: nothing else may live inside it
        inside = _absolute(export.saved_model_dir)
        for flag, path in where.items():
            if flag != "--saved_model_dir" and (path == inside or path.startswith(inside + os.sep)):
                raise UserError(f"{flag} '{path}' lies in --saved_model_dir, which is replaced whole by each "
                                "run; give it a path outside.")

    for flag, path in files.items():
        shown = export.checkpoint_path if flag == "--checkpoint_path" else path  # the flag's value, not its .index
        if path.is_dir() and not path.is_symlink():
            raise UserError(f"{flag} '{shown}' is a folder; name a file.")
        _writable(flag, shown, path.parent)
    for flag, folder in folders.items():
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{flag} '{folder}' is a file, not a folder.")
        if flag == "--bottleneck_dir" and (folder / "bottlenecks.sqlite3").is_file():
            continue  # a warm cache on a read-only file system is still read (the cache reports any write it needs)
        _writable(flag, folder, folder)
    for part in ("train", "validation", "previous_runs"):  # where earlier TensorBoard runs are moved
        path = config.report.summaries_dir / part
        if path.exists() and not path.is_dir():
            raise UserError(f"--summaries_dir holds a file '{path}' where a folder of TensorBoard runs belongs; "
                            "move it away.")


def _absolute(path) -> str:
    return os.path.realpath(os.path.abspath(path))


def _writable(flag: str, path: Path, folder: Path) -> None:
    """Raise UserError unless a file can be created in ``folder`` (or in its nearest existing ancestor)."""
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} '{path}' cannot be created: '{existing}' is a file, not a folder.")
    # Try it: the mode bits tell nothing for root, and only a write reveals a read-only mount.
    try:
        fd, probe = tempfile.mkstemp(prefix=".retrain-probe-", dir=existing)
    except OSError as exc:
        raise UserError(f"{flag} '{path}' cannot be written: '{existing}' refuses new files "
                        f"({exc.strerror or exc}).") from None
    os.close(fd)
    os.unlink(probe)
