"""Every check of the flags, before any work starts: retrain.py's settings, label_image.py's and beam-bottlenecks'.

Every check raises ``UserError`` (one sentence, exit code 2), so a mistyped
flag or an output path that cannot be written costs seconds, not the hour of
bottlenecks that would come before the failure.  ``check_settings`` runs
retrain.py's in this order:

- ``check_finite``: every float is a finite number (``nan`` and ``inf`` are
  refused first: a NaN learning rate would train and export a NaN model, and
  nan passes a range check as inf passes a positive one);
- ``check_ranges``: the range each setting declares in settings.py
  (``check=``), all in one loop;
- ``check_rules``: the rules that join settings (the split, the module,
  fine-tuning, TFLite);
- ``check_values``: the values the engine relies on (seed, tensor name);
- ``check_outputs``: every output location can be written, no two outputs
  share one path, and nothing that is in the way (a file where a folder must
  go, a folder where a file must go, a --saved_model_dir of the user's own
  files) is discovered after training.

``output_locations`` lists every place a run writes, for the checks and for the
walk, which never takes the run's own outputs for images.

label_image.py's flags (``check_label_image_flags``) and beam-bottlenecks'
use the same ``check_finite`` and ``check_range``.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from pathlib import Path

from ..errors import UserError
from ..model.inception_v3 import BLOCKS, CLASSIC_TOP_BLOCK, MAX_TUNED_BLOCKS, TOP_BLOCKS
from ..model.modules import BUILTIN_MODULE
from .settings import (
    FRACTION,
    NON_NEGATIVE,
    PERCENTAGE,
    PERCENTAGE_BELOW_100,
    POSITIVE,
    POSITIVE_OR_WHOLE_SET,
    SCORE,
    settings_fields,
    thresholds_path,
)

# What each declared range accepts, and the sentence that refuses any other value unless the setting names its own.
RANGES = {
    POSITIVE: (lambda v: v > 0, "--{flag} must be a positive number, got {value}."),
    POSITIVE_OR_WHOLE_SET: (lambda v: v > 0 or v == -1,
                            "--{flag} must be a positive number, or -1 for the whole set, got {value}."),
    NON_NEGATIVE: (lambda v: v >= 0, "--{flag} cannot be negative, got {value}."),
    PERCENTAGE: (lambda v: 0 <= v <= 100, "--{flag} is a percentage between 0 and 100."),
    PERCENTAGE_BELOW_100: (lambda v: 0 <= v < 100, "--{flag} must be between 0 and 100, got {value}."),
    FRACTION: (lambda v: 0 <= v < 1, "--{flag} must be at least 0 and below 1, got {value}."),
    SCORE: (lambda v: 0 <= v <= 1, "--{flag} is a score between 0 and 1, got {value:g}."),
}
# TensorFlow's rule for op names (tensorflow/core/framework/node_def_util.cc), without '/' (a name scope).
_OP_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-]*")
# Names the exported graph already uses for its own nodes.
RESERVED_TENSOR_NAMES = ("Placeholder", "bottleneck", "final_weights", "final_biases")
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds both accept this range


def check_settings(config) -> None:
    """Every check of a run's settings, before anything is read or computed: nan and inf first (the range checks
    would pass them), then the ranges, the rules that join settings, the values the engine relies on, and every
    output location."""
    check_finite(config.flags())
    check_image_dir(config)
    check_ranges(config)
    check_rules(config)
    check_values(config)
    check_outputs(config)


def check_finite(values: dict) -> None:
    """Every float in ``values`` (flag -> value) must be a finite number."""
    for flag, value in sorted(values.items()):
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"--{flag} must be a finite number, got {value}.")


def check_range(flag: str, value, kind: str, refusal: str | None = None) -> None:
    """Refuse ``value`` unless it lies in the range ``kind`` (a name of settings.py) or is None (not given);
    ``refusal`` replaces the range's own sentence."""
    accepts, sentence = RANGES[kind]
    if value is not None and not accepts(value):
        raise UserError((refusal or sentence).format(flag=flag, value=value))


def check_ranges(config) -> None:
    """The range that each setting declares with its default, in the settings' order."""
    for group, field, flag in settings_fields():
        if field.metadata["check"]:
            check_range(flag, getattr(getattr(config, group), field.name), field.metadata["check"],
                        field.metadata["refusal"])


def check_image_dir(config) -> None:
    if config.input.labels_csv is None and (config.input.image_dir is None or not str(config.input.image_dir)):
        raise UserError("--image_dir is required: point it at a folder with one sub-folder of images per class.")


def check_rules(config) -> None:
    """The rules that join several settings, or that a range alone cannot say."""
    inputs, bottlenecks, tuning = config.input, config.bottlenecks, config.fine_tune
    if inputs.testing_percentage + inputs.validation_percentage >= 100:
        raise UserError("--testing_percentage plus --validation_percentage leaves no images for training.")
    if bottlenecks.random_brightness >= 100:
        raise UserError("--random_brightness must be below 100 (a factor of 1 - b% must stay positive).")
    builtin = bottlenecks.tfhub_module == BUILTIN_MODULE
    if not builtin and bottlenecks.bottleneck_layer != CLASSIC_TOP_BLOCK:
        raise UserError("--bottleneck_layer chooses a block of the built-in --tfhub_module inception_v3 only.")
    if config.network.enabled:  # first: with --fine_tune as well, the clash is what to say
        check_network_tuning(config)
    if tuning.enabled:
        check_fine_tune(config)
    if inputs.multi_label and not inputs.labels_csv:
        raise UserError("--multi_label needs --labels_csv, the CSV file that gives each image its labels.")
    if inputs.multi_label and tuning.enabled:
        raise UserError("--fine_tune trains single-label runs only; leave out --fine_tune or --multi_label.")
    if config.export.tflite_quantize != "none" and config.export.tflite_output is None:
        raise UserError("--tflite_quantize needs --tflite_output, the file to write the TFLite model to.")


def check_fine_tune(config) -> None:
    """--fine_tune's settings, which matter only when it is asked for."""
    tuning = config.fine_tune
    if config.bottlenecks.tfhub_module != BUILTIN_MODULE:
        raise UserError("--fine_tune works with the built-in --tfhub_module inception_v3 only.")
    if not 1 <= tuning.blocks <= MAX_TUNED_BLOCKS:
        raise UserError(f"--fine_tune_layers must be between 1 and {MAX_TUNED_BLOCKS}, got {tuning.blocks}.")
    for flag, value in (("fine_tune_steps", tuning.steps), ("fine_tune_batch_size", tuning.batch_size),
                        ("fine_tune_learning_rate", tuning.learning_rate)):
        check_range(flag, value, POSITIVE, "--{flag} must be positive, got {value}.")
    if config.bottlenecks.precision == "int8":
        raise UserError("--precision int8 cannot feed --fine_tune, which needs the network's float activations; "
                        "use --precision auto, float32 or bfloat16.")


def check_network_tuning(config) -> None:
    """--fine_tune_network's rules with the other settings."""
    if config.fine_tune.enabled:
        raise UserError("--fine_tune_network already trains the top blocks that --fine_tune would; use one of them.")
    if config.input.multi_label:
        raise UserError("--fine_tune_network trains single-label runs only; leave out --fine_tune_network or "
                        "--multi_label.")
    blocks = config.network.blocks
    if blocks and config.bottlenecks.tfhub_module != BUILTIN_MODULE:
        raise UserError("--network_blocks works with the built-in --tfhub_module inception_v3 only; other modules are "
                        "fine-tuned whole (--network_blocks 0).")
    # --preset auto may go on with another layer than the one given: the bound must hold for every one it may pick.
    layers = TOP_BLOCKS if config.selection is not None else (config.bottlenecks.bottleneck_layer,)
    most = min(BLOCKS.index(layer) + 1 for layer in layers)
    if blocks > most:
        given = (f"--preset auto, which may pick any of {', '.join(TOP_BLOCKS)}" if config.selection is not None
                 else f"--bottleneck_layer {layers[0]}")
        raise UserError(f"--network_blocks must be at most {most} with {given}, got {blocks}; 0 trains the whole "
                        "network.")


def check_values(config) -> None:
    """The seed and the output tensor's name, which the engine relies on."""
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


def check_label_image_flags(args) -> None:
    """label_image.py's flags (its parsed ``args``), checked before the graph or any image is read."""
    if not (list(args.image) + list(args.images) or getattr(args, "labels_csv", None)):
        raise UserError("No image given: pass image files or folders, or --image PATH.")
    for flag in ("top_k", "batch_size"):
        check_range(flag, getattr(args, flag), POSITIVE, "--top_k and --batch_size must be positive.")
    check_finite(vars(args))
    for flag in ("input_height", "input_width"):
        check_range(flag, getattr(args, flag), POSITIVE, "--{flag} must be a positive number of pixels, got {value}.")
    if args.input_std == 0:
        raise UserError("--input_std cannot be 0: the pixels are divided by it.")
    check_range("threshold", args.threshold, SCORE)
    if str(args.graph).lower().endswith(".tflite") and args.precision not in ("auto", "float32"):
        raise UserError("--precision applies to frozen graphs (.pb); a .tflite model runs at the precision it "
                        "was converted to (retrain.py --tflite_quantize).")


def output_files(config) -> dict[str, Path]:
    """The files a run writes, by flag (the checkpoint by its ``.index`` file)."""
    export = config.export
    files = {
        "--output_graph": export.output_graph,
        "--output_labels": export.output_labels,
        "--checkpoint_path": Path(f"{export.checkpoint_path}.index"),
    }
    if export.tflite_output:
        files["--tflite_output"] = export.tflite_output
    if export.onnx_output:
        files["--onnx_output"] = export.onnx_output
    if config.input.multi_label:  # the thresholds file goes beside the labels
        files["--output_labels (its thresholds)"] = thresholds_path(export.output_labels)
    return files


def output_folders(config) -> dict[str, Path]:
    """The folders a run writes into, by flag."""
    export = config.export
    folders = {
        "--bottleneck_dir": config.bottlenecks.bottleneck_dir,
        "--summaries_dir": config.report.summaries_dir,
        "--report_dir": config.report_dir,
    }
    if export.saved_model_dir:
        folders["--saved_model_dir"] = export.saved_model_dir
    if export.tfjs_output:
        folders["--tfjs_output"] = export.tfjs_output
    if export.intermediate_store_frequency:
        folders["--intermediate_output_graphs_dir"] = export.intermediate_output_graphs_dir
    return folders


def output_locations(config) -> list[tuple[str, Path]]:
    """Every file and folder a run writes, as (flag, path): the checked outputs, the checkpoint's data file
    beside its index, and the intermediate graphs' folder even when none are asked for."""
    export = config.export
    return [*output_files(config).items(), *output_folders(config).items(),
            ("--checkpoint_path", Path(f"{export.checkpoint_path}.data-00000-of-00001")),
            ("--intermediate_output_graphs_dir", export.intermediate_output_graphs_dir)]


def check_saved_model_dir(directory) -> None:
    """Raise UserError unless ``directory`` may hold a new SavedModel: absent, empty, or a SavedModel.

    A folder of other files is refused: the export owns a SavedModel's own files only (export/outputs.py).
    """
    directory = Path(directory)
    if directory.is_dir() and not (directory / "saved_model.pb").is_file() and any(directory.iterdir()):
        raise UserError(
            f"--saved_model_dir '{directory}' is a folder that holds no SavedModel; name a new or empty folder "
            "(or a previous SavedModel)."
        )
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--saved_model_dir '{directory}' is a file, not a folder.")


def check_outputs(config) -> None:
    """Every output location can be written and no two outputs share one path."""
    export = config.export
    files, folders = output_files(config), output_folders(config)

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
    for whole in ("--saved_model_dir", "--tfjs_output"):  # replaced whole: nothing else may live inside them
        if whole not in folders:
            continue
        inside = _absolute(folders[whole])
        for flag, path in where.items():
            if flag != whole and (path == inside or path.startswith(inside + os.sep)):
                raise UserError(f"{flag} '{path}' lies in {whole}, which is replaced whole by each "
                                "run; give it a path outside.")

    for flag, path in files.items():
        shown = export.checkpoint_path if flag == "--checkpoint_path" else path  # the flag's value, not its .index
        if path.is_dir() and not path.is_symlink():
            raise UserError(f"{flag} '{shown}' is a folder; name a file.")
        _writable(flag, shown, path.parent)
    if export.saved_model_dir:
        check_saved_model_dir(export.saved_model_dir)
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
