"""Every setting of a retraining run, written once: its default, its meaning, its flag and its range.

Each group below is one section of ``retrain.py --help``; the command line
(``cli/retrain.py``) builds its flags from these dataclasses, so a default or a
help text lives here and nowhere else, and ``checks.py`` tests the range that a
setting declares here.  A field's flag is its name unless ``flag=`` says
otherwise: the classic script's names are kept even where a shorter name reads
better in code (``--how_many_training_steps`` is ``training.steps``).

The engine takes a ``RetrainConfig`` and never looks at the command line.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from ..model.inception_v3 import CLASSIC_TOP_BLOCK, MAX_TUNED_BLOCKS, TOP_BLOCKS
from ..model.modules import BUILTIN_MODULE
from ..model.precision import DEFAULT_PRECISION, PRECISIONS
from ..model.weights import default_model_dir

# The ranges a number can declare with ``check=``; config/checks.py holds what each accepts and the sentence
# that refuses any other value, and tests every declared range in one loop.  Every float must also be finite,
# whatever its range.
POSITIVE = "positive"  # above 0
POSITIVE_OR_WHOLE_SET = "positive or -1"  # above 0, or -1 for the whole set
NON_NEGATIVE = "non-negative"  # 0 or above
PERCENTAGE = "percentage"  # 0 to 100
PERCENTAGE_BELOW_100 = "percentage below 100"  # 0 or above and below 100
FRACTION = "fraction"  # 0 or above and below 1
SCORE = "score"  # 0 to 1

# How the TFLite model can be quantized (export/tflite.py converts each).
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


def setting(default=dataclasses.MISSING, help="", *, flag=None, factory=dataclasses.MISSING, check=None,
            refusal=None, **argparse_options):
    """A dataclass field with what the command line needs to offer it as a flag, and the range of its value.

    ``argparse_options`` go to ``add_argument`` as they are (``type``, ``choices``, ``metavar``).  ``check``
    names the range the value must lie in (POSITIVE, PERCENTAGE, ...; None: no range), and ``refusal`` the
    sentence that refuses a value outside it where the range's own sentence does not fit (``{flag}`` and
    ``{value}`` are filled in).
    """
    metadata = {"help": help, "flag": flag, "argparse": argparse_options, "check": check, "refusal": refusal}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# Refusals that several settings share, one sentence naming all of them.
_NEGATIVE_PERCENTAGE = "--{flag} is a percentage and cannot be negative."
_SMOOTHING_OR_DROPOUT = "--label_smoothing and --dropout must be at least 0 and below 1."
_DECAY_OR_PATIENCE = "--weight_decay and --early_stopping_patience cannot be negative."


@dataclass(frozen=True)
class InputSettings:
    """input and split"""

    image_dir: Path | None = setting(None, "Path to folders of labeled images (one sub-folder per class).")
    testing_percentage: float = setting(10, "What percentage of images to use as a test set.",
                                        check=PERCENTAGE_BELOW_100)
    validation_percentage: float = setting(10, "What percentage of images to use as a validation set.",
                                           check=PERCENTAGE_BELOW_100)
    labels_csv: Path | None = setting(
        None, "A CSV file of images and their labels, instead of class folders: one row per image, its path "
        "(relative to --image_dir when given, else to the CSV file's folder) and its label (docs/data.md).")
    multi_label: bool = setting(
        False, "Each image of --labels_csv may have several labels, separated by '|': per-label sigmoid scores "
        "trained with binary cross-entropy, and a threshold per label chosen on the validation set and written "
        "beside --output_labels.")


@dataclass(frozen=True)
class BottleneckSettings:
    """bottlenecks"""

    bottleneck_dir: Path = setting(Path("/tmp/bottleneck"), "Path to cache bottleneck layer values.")
    bottleneck_shards: str | None = setting(
        None, "Folder (or gs://... URL) of bottleneck shards written by python -m bottleneck beam-bottlenecks, "
        "imported into the cache before any bottleneck is computed (default: <bottleneck_dir>/shards when it exists).")
    tfhub_module: str = setting(
        BUILTIN_MODULE,
        "Which image module to use: 'inception_v3' (built in: Google's 2015-12-05 Inception-v3, works offline), "
        "a TensorFlow Hub handle or URL of an image feature-vector module, or a local SavedModel directory.")
    model_dir: Path = setting(factory=default_model_dir,
                              help="Where the built-in model's weights are downloaded and converted (once) (default: "
                              "$BOTTLENECK_MODEL_DIR if set, else ~/.cache/bottleneck-retrain/models).")
    bottleneck_layer: str = setting(
        CLASSIC_TOP_BLOCK,
        "Built-in Inception-v3 only: the block whose averaged output is the bottleneck. mixed_10 is the classic "
        "pool_3; mixed_9, one block lower, transfers better to new classes (--preset best).", choices=TOP_BLOCKS)
    extraction_batch_size: int = setting(
        32, "How many images go through the network at once when computing bottlenecks.", check=POSITIVE)
    precision: str = setting(
        DEFAULT_PRECISION, "Arithmetic of the network while computing bottlenecks: auto (bfloat16 where the processor "
        "computes it natively, else float32), float32, bfloat16, or int8 (a quantized copy run by TensorFlow Lite). "
        "Exports stay float32.", choices=PRECISIONS)
    decode_workers: str = setting(
        "auto", "Where images are decoded while bottlenecks are computed: auto (worker processes on a machine with "
        "at least 4 usable cores and 500 images or more to compute, else threads; docs/performance.md), threads, or "
        "processes.", choices=("auto", "threads", "processes"))  # data/decoding.py's WORKER_KINDS
    # Distortions: each training image gets distorted_copies fixed variants, computed once and cached.
    flip_left_right: bool = setting(False, "Whether to randomly flip half of the training images horizontally.")
    random_crop: float = setting(
        0, "A percentage determining how much of a margin to randomly crop off the training images.", type=int,
        check=NON_NEGATIVE, refusal=_NEGATIVE_PERCENTAGE)
    random_scale: float = setting(
        0, "A percentage determining how much to randomly scale up the size of the training images by.", type=int,
        check=NON_NEGATIVE, refusal=_NEGATIVE_PERCENTAGE)
    # Also below 100: a rule of checks.py, with its own sentence.
    random_brightness: float = setting(
        0, "A percentage determining how much to randomly multiply the training image input pixels up or down by.",
        type=int, check=NON_NEGATIVE, refusal=_NEGATIVE_PERCENTAGE)
    distorted_copies: int = setting(
        3, "With any distortion flag: how many distorted versions of each training image to compute (once, then "
        "cached) and train on.", check=POSITIVE, refusal="--distorted_copies must be at least 1.")

    @property
    def distortion(self):
        from ..data.distort import Distortion

        return Distortion(self.flip_left_right, self.random_crop, self.random_scale, self.random_brightness)

    @property
    def copies(self) -> int:
        """Distorted copies per training image: none unless a distortion is asked for."""
        return self.distorted_copies if self.distortion.active else 0


@dataclass(frozen=True)
class TrainSettings:
    """training"""

    steps: int = setting(4000, "How many training steps to run before ending.", flag="how_many_training_steps",
                         check=POSITIVE)
    learning_rate: float = setting(0.01, "How large a learning rate to use when training.", check=POSITIVE,
                                   refusal="--{flag} must be positive, got {value}.")
    batch_size: int = setting(100, "How many images to train on at a time. A value of -1 trains on the whole "
                              "training set at every step.", flag="train_batch_size", check=POSITIVE_OR_WHOLE_SET)
    eval_step_interval: int = setting(10, "How often to evaluate the training results.", check=POSITIVE)
    validation_batch_size: int = setting(
        100, "How many images to use in an evaluation batch. A value of -1 causes the entire validation set to be "
        "used, which leads to more stable results across training iterations.", check=POSITIVE_OR_WHOLE_SET)
    test_batch_size: int = setting(
        -1, "How many images to test on. This test set is only used once, to evaluate the final accuracy after "
        "training completes. A value of -1 causes the entire test set to be used.", check=POSITIVE_OR_WHOLE_SET)
    seed: int | None = setting(
        None, "Seed for the weights and batch sampling, so that a run can be reproduced exactly (distorted copies "
        "are a fixed function of each image already).", flag="random_seed")
    optimizer: str = setting("sgd", "Optimizer of the new layer: sgd (the classic), momentum (0.9) or adam.",
                             choices=("sgd", "momentum", "adam"))
    label_smoothing: float = setting(0.0, "Label smoothing of the training targets (0 to 1).", check=FRACTION,
                                     refusal=_SMOOTHING_OR_DROPOUT)
    dropout: float = setting(0.0, "Dropout rate on the bottleneck during training (0 to 1).", check=FRACTION,
                             refusal=_SMOOTHING_OR_DROPOUT)
    weight_decay: float = setting(0.0, "L2 penalty on the new layer's weights.", check=NON_NEGATIVE,
                                  refusal=_DECAY_OR_PATIENCE)
    early_stopping_patience: int = setting(
        0, "Stop after this many evaluations without a lower validation cross-entropy, keeping the best step's "
        "weights (0: off).", check=NON_NEGATIVE, refusal=_DECAY_OR_PATIENCE)


@dataclass(frozen=True)
class FineTuneSettings:
    """fine-tuning"""

    enabled: bool = setting(
        False, "After training the new layer, also train the top --fine_tune_layers blocks of the built-in "
        "Inception-v3 with it (their input is cached once per image); kept only if validation improves.",
        flag="fine_tune")
    blocks: int = setting(1, "How many mixed blocks --fine_tune trains, counting down from --bottleneck_layer: "
                          f"1 (that block alone) to {MAX_TUNED_BLOCKS}.", flag="fine_tune_layers")
    steps: int = setting(300, "How many fine-tuning steps to run.", flag="fine_tune_steps")
    # Adam's; far below the new layer's own rate, since the blocks start from trained weights.
    learning_rate: float = setting(1e-4, "Adam's learning rate while fine-tuning.", flag="fine_tune_learning_rate")
    batch_size: int = setting(32, "How many images to fine-tune on at a time.", flag="fine_tune_batch_size")


@dataclass(frozen=True)
class NetworkTuneSettings:
    """fine-tuning the whole network"""

    enabled: bool = setting(
        False, "After training the new layer, train every block of the network together with it, on decoded images "
        "distorted afresh at every epoch, keeping the epoch with the best validation accuracy (docs/fine-tuning.md).",
        flag="fine_tune_network")
    epochs: int = setting(8, "How many passes over the training images --fine_tune_network makes at most.",
                          flag="network_epochs", check=POSITIVE)
    optimizer: str = setting(
        "momentum", "Optimizer of --fine_tune_network: momentum (SGD, 0.9), adam, or lars (SGD with momentum whose "
        "step for each weight matrix is scaled to the matrix's norm: the learning rate is then the share of its size "
        "a kernel moves per step).", flag="network_optimizer", choices=("momentum", "adam", "lars"))
    # Far below a new layer's own, since every weight starts trained.
    learning_rate: float = setting(
        3e-4, "Peak learning rate of the network's weights while fine-tuning the whole network (the new layer's is "
        "ten times higher), reached after the warm-up and decayed to zero along a cosine; with adam, try 0.00002.",
        flag="network_learning_rate", check=POSITIVE)
    warmup: float = setting(0.1, "The share of --fine_tune_network's steps over which its learning rate rises from "
                            "zero to its peak.", flag="network_warmup", check=FRACTION)
    weight_decay: float = setting(
        0.01, "Decoupled weight decay while fine-tuning the whole network: the network's weights are pulled towards "
        "their trained starting values (L2-SP), the new layer's towards zero.", flag="network_weight_decay",
        check=NON_NEGATIVE)
    label_smoothing: float = setting(0.1, "Label smoothing of the targets while fine-tuning the whole network.",
                                     flag="network_label_smoothing", check=FRACTION)
    patience: int = setting(3, "Stop fine-tuning the whole network after this many epochs that do not beat the "
                            "validation accuracy of its best epoch so far (0: run every epoch).",
                            flag="network_patience", check=NON_NEGATIVE)
    batch_size: int = setting(0, "How many images each step of --fine_tune_network trains on (0: as many as fit in "
                              "memory, at most 16).", flag="network_batch_size", check=NON_NEGATIVE)
    blocks: int = setting(
        0, "How many mixed blocks of the built-in Inception-v3 --fine_tune_network trains, counting down from "
        "--bottleneck_layer (0: every block and the stem, the whole network); the blocks below stay as they are and "
        "need no backward pass.", flag="network_blocks", check=NON_NEGATIVE)


@dataclass(frozen=True)
class ExportSettings:
    """export"""

    output_graph: Path = setting(Path("/tmp/output_graph.pb"), "Where to save the trained graph.")
    output_labels: Path = setting(Path("/tmp/output_labels.txt"), "Where to save the trained graph's labels.")
    final_tensor_name: str = setting("final_result",
                                     "The name of the output classification layer in the retrained graph.")
    saved_model_dir: Path | None = setting(None, "Where to save the exported graph as a SavedModel.")
    tflite_output: Path | None = setting(
        None, "Also write the whole classifier as a TensorFlow Lite model to this file (float images [N, H, W, 3] "
        "in [0, 1] -> softmax scores; the labels are embedded).")
    tflite_quantize: str = setting(
        "none", "How the TFLite model is quantized: none (float32), float16 weights, dynamic-range int8 weights, or "
        "int8 weights and activations calibrated on up to 100 training images (int8 input and output).",
        choices=QUANTIZATIONS)
    onnx_output: Path | None = setting(
        None, "Also write the whole classifier as an ONNX model to this file (float images [N, H, W, 3] in [0, 1] -> "
        "scores; the labels in its metadata), checked against the frozen graph with ONNX Runtime (docs/exports.md).")
    tfjs_output: Path | None = setting(
        None, "Also write the whole classifier as a TensorFlow.js graph model to this folder (model.json and weight "
        "files; the labels in its metadata), replaced whole by each run (docs/exports.md).")
    checkpoint_path: Path = setting(Path("/tmp/_retrain_checkpoint"),
                                    "Where to save the trained new layer's checkpoint.")
    intermediate_output_graphs_dir: Path = setting(Path("/tmp/intermediate_graph/"),
                                                   "Where to save the intermediate graphs.")
    intermediate_store_frequency: int = setting(
        0, "How many steps to store intermediate graph. If 0, intermediate graphs are not stored.",
        check=NON_NEGATIVE, refusal="--intermediate_store_frequency must be 0 (no intermediate graphs) or a positive "
        "number of steps, got {value}.")
    no_temperature_scaling: bool = setting(
        False, "Export the plain softmax instead of softmax(logits / T), T fitted on the validation set "
        "(docs/data-report.md); the predicted class is the same, only the confidence changes.")


@dataclass(frozen=True)
class ReportSettings:
    """reports"""

    report_dir: Path | None = setting(
        None, "Where to write report.html, training_curves.png, confusion_matrix.png, summary.json and the data "
        "checks' CSV files (default: <output_graph without .pb>_report next to the output graph).")
    summaries_dir: Path = setting(Path("/tmp/retrain_logs"), "Where to save summary logs for TensorBoard.")
    print_misclassified_test_images: bool = setting(False,
                                                    "Whether to print out a list of all misclassified test images.")
    skip_data_checks: bool = setting(
        False, "Skip the search for suspected label errors, duplicates and test-set leakage (report.html's last "
        "sections and their CSV files; docs/data-report.md).")
    skip_heatmaps: bool = setting(
        False, "Skip the heatmaps that report.html lays over its misclassified images and suspected label errors "
        "(one pass of those images through the network; docs/views.md).")


@dataclass(frozen=True)
class RunSettings:
    """run control"""

    logging_verbosity: str = setting("INFO", "How much logging output should be produced.",
                                     choices=("DEBUG", "INFO", "WARN", "ERROR", "FATAL"))
    quiet: bool = setting(False, "Print only warnings, errors and the final result.")
    strict: bool = setting(
        False, "Treat any unreadable image as an error (exit 2) instead of skipping it, and fail (exit 1, previous "
        "outputs kept) when a test image has an exact or near copy in the training or validation set.")
    assert_accuracy_at_least: float | None = setting(
        None, "Fail (exit 1) and keep the previous outputs when the final test accuracy is below PCT percent.",
        metavar="PCT", check=PERCENTAGE)


@dataclass(frozen=True)
class ModelSelection:
    """--preset auto: the training options and --bottleneck_layer are chosen by cross-validation on the run's own
    images (training/model_selection.py), except the flags given explicitly (``fixed``), which keep their value."""

    fixed: frozenset[str] = frozenset()  # flag names


@dataclass(frozen=True)
class RetrainConfig:
    """One run's settings, group by group."""

    input: InputSettings = field(default_factory=InputSettings)
    bottlenecks: BottleneckSettings = field(default_factory=BottleneckSettings)
    training: TrainSettings = field(default_factory=TrainSettings)
    fine_tune: FineTuneSettings = field(default_factory=FineTuneSettings)
    network: NetworkTuneSettings = field(default_factory=NetworkTuneSettings)
    export: ExportSettings = field(default_factory=ExportSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    run: RunSettings = field(default_factory=RunSettings)
    # Not a group of flags: set by --preset auto, None otherwise (the setting is then the flags' own).
    selection: ModelSelection | None = None

    @property
    def report_dir(self) -> Path:
        if self.report.report_dir is not None:
            return self.report.report_dir
        graph = self.export.output_graph
        return graph.with_name(graph.stem + "_report")

    def flags(self) -> dict:
        """flag name -> value, as the report and TensorBoard show the settings."""
        return {flag: getattr(getattr(self, group), f.name) for group, f, flag in settings_fields()}


def thresholds_path(labels_path) -> Path:
    """Where a multi-label run writes its thresholds: beside the labels file, ``<labels>_thresholds.json``."""
    labels_path = Path(labels_path)
    return labels_path.with_name(labels_path.stem + "_thresholds.json")


def settings_fields():
    """(group name, field, flag name) for every setting, in --help order."""
    for group in dataclasses.fields(RetrainConfig):
        if group.default_factory is dataclasses.MISSING:  # not a group of flags (selection)
            continue
        for f in dataclasses.fields(group.default_factory):
            yield group.name, f, f.metadata.get("flag") or f.name


def with_flags(config: RetrainConfig, values: dict) -> RetrainConfig:
    """A copy of ``config`` with the settings that ``values`` names by flag replaced."""
    changes: dict[str, dict] = {}
    for group, f, flag in settings_fields():
        if flag in values:
            changes.setdefault(group, {})[f.name] = values[flag]
    return dataclasses.replace(config, **{g: dataclasses.replace(getattr(config, g), **c) for g, c in changes.items()})


# Measured combinations of training options, by flag; flags given explicitly win over a preset.
# "best" was chosen by validation accuracy and ten-fold cross-validation on a flowers data set
# (docs/accuracy.md): Adam trains the new layer better than plain SGD, and mixed_9's average
# transfers better to new classes than the classic pool_3.
PRESETS = {
    "classic": {},
    "best": {"optimizer": "adam", "learning_rate": 0.001, "bottleneck_layer": "mixed_9"},
}
# Not a combination but a search: the setting that cross-validates best on the run's own images (ModelSelection).
AUTO_PRESET = "auto"

