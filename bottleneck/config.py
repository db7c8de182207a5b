"""The command line of retrain.py and the one configuration object built from it.

Flag names, meanings and defaults follow the last classic TensorFlow-Hub
``retrain.py`` (and its predecessor's ``--model_dir``/``--architecture``), so
command lines that people already have keep working.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .inception_v3 import CLASSIC_TOP_BLOCK, TOP_BLOCKS, default_model_dir

BUILTIN_MODULE = "inception_v3"

# The older script's --architecture names, mapped to the module they meant.
ARCHITECTURES = {
    "inception_v3": BUILTIN_MODULE,
}
for _version, _hub in (("1.0", "100"), ("0.75", "075"), ("0.50", "050"), ("0.25", "025")):
    for _size in (224, 192, 160, 128):
        ARCHITECTURES[f"mobilenet_{_version}_{_size}"] = (
            f"https://tfhub.dev/google/imagenet/mobilenet_v1_{_hub}_{_size}/feature_vector/1"
        )

LOGGING_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")

# Training presets, chosen by validation accuracy on flower_photos_dev (README: "Training options").
# "best": Adam at 0.001 had the highest validation accuracy in bench/sweep_training_options.py
# (89.4% against 87.6% for the classic SGD; test accuracy 84.4% for both).
# Its bottleneck is mixed_9's average rather than the classic pool_3 (mixed_10's): 91.6% against 89.1%
# ten-fold cross-validated accuracy over all 1,000 images (bench/sweep_bottleneck_layer.py).
PRESETS = {
    "classic": {"optimizer": "sgd", "learning_rate": 0.01, "label_smoothing": 0.0, "dropout": 0.0,
                "weight_decay": 0.0, "early_stopping_patience": 0, "bottleneck_layer": CLASSIC_TOP_BLOCK},
    "best": {"optimizer": "adam", "learning_rate": 0.001, "label_smoothing": 0.0, "dropout": 0.0,
             "weight_decay": 0.0, "early_stopping_patience": 0, "bottleneck_layer": "mixed_9"},
}


@dataclass(frozen=True)
class RetrainConfig:
    image_dir: Path
    output_graph: Path = Path("/tmp/output_graph.pb")
    output_labels: Path = Path("/tmp/output_labels.txt")
    intermediate_output_graphs_dir: Path = Path("/tmp/intermediate_graph/")
    intermediate_store_frequency: int = 0
    summaries_dir: Path = Path("/tmp/retrain_logs")
    how_many_training_steps: int = 4000
    learning_rate: float = 0.01
    testing_percentage: float = 10.0
    validation_percentage: float = 10.0
    eval_step_interval: int = 10
    train_batch_size: int = 100
    test_batch_size: int = -1
    validation_batch_size: int = 100
    print_misclassified_test_images: bool = False
    bottleneck_dir: Path = Path("/tmp/bottleneck")
    final_tensor_name: str = "final_result"
    flip_left_right: bool = False
    random_crop: float = 0.0
    random_scale: float = 0.0
    random_brightness: float = 0.0
    tfhub_module: str = BUILTIN_MODULE
    saved_model_dir: Path | None = None
    logging_verbosity: str = "INFO"
    checkpoint_path: Path = Path("/tmp/_retrain_checkpoint")
    model_dir: Path = dataclasses.field(default_factory=default_model_dir)
    random_seed: int | None = None
    extraction_batch_size: int = 32
    strict: bool = False
    assert_accuracy_at_least: float | None = None
    quiet: bool = False
    report_dir: Path | None = None  # None: <output_graph's folder>/<graph name>_report
    distorted_copies: int = 3
    optimizer: str = "sgd"
    label_smoothing: float = 0.0
    dropout: float = 0.0
    weight_decay: float = 0.0
    early_stopping_patience: int = 0
    tflite_output: Path | None = None
    tflite_quantize: str = "none"
    bottleneck_layer: str = CLASSIC_TOP_BLOCK  # built-in Inception-v3: the block averaged into the bottleneck
    fine_tune: bool = False
    fine_tune_layers: int = 1
    fine_tune_steps: int = 300
    fine_tune_learning_rate: float = 1e-4
    fine_tune_batch_size: int = 32

    @property
    def resolved_report_dir(self) -> Path:
        if self.report_dir is not None:
            return self.report_dir
        return self.output_graph.with_name(self.output_graph.stem + "_report")

    @property
    def distortion(self):
        from .distort import Distortion

        return Distortion(self.flip_left_right, self.random_crop, self.random_scale, self.random_brightness)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retrain.py",
        description="Retrain the top layer of a pre-trained image network on your own classes.",
        epilog="Exit codes: 0 success, 2 usage or input error, 1 other failure.",
    )
    a = p.add_argument
    a("--image_dir", type=str, default="", help="Path to folders of labeled images (one sub-folder per class).")
    a("--output_graph", type=str, default="/tmp/output_graph.pb", help="Where to save the trained graph.")
    a("--intermediate_output_graphs_dir", type=str, default="/tmp/intermediate_graph/",
      help="Where to save the intermediate graphs.")
    a("--intermediate_store_frequency", type=int, default=0,
      help="How many steps to store intermediate graph. If 0, intermediate graphs are not stored.")
    a("--output_labels", type=str, default="/tmp/output_labels.txt", help="Where to save the trained graph's labels.")
    a("--summaries_dir", type=str, default="/tmp/retrain_logs", help="Where to save summary logs for TensorBoard.")
    a("--how_many_training_steps", type=int, default=4000, help="How many training steps to run before ending.")
    a("--learning_rate", type=float, default=None, help="How large a learning rate to use when training "
      "(default 0.01, or the --preset's).")
    a("--testing_percentage", type=float, default=10, help="What percentage of images to use as a test set.")
    a("--validation_percentage", type=float, default=10, help="What percentage of images to use as a validation set.")
    a("--eval_step_interval", type=int, default=10, help="How often to evaluate the training results.")
    a("--train_batch_size", type=int, default=100, help="How many images to train on at a time.")
    a("--test_batch_size", type=int, default=-1,
      help="How many images to test on. This test set is only used once, to evaluate the final accuracy "
           "after training completes. A value of -1 causes the entire test set to be used.")
    a("--validation_batch_size", type=int, default=100,
      help="How many images to use in an evaluation batch. A value of -1 causes the entire validation set "
           "to be used, which leads to more stable results across training iterations.")
    a("--print_misclassified_test_images", default=False, action="store_true",
      help="Whether to print out a list of all misclassified test images.")
    a("--bottleneck_dir", type=str, default="/tmp/bottleneck", help="Path to cache bottleneck layer values.")
    a("--final_tensor_name", type=str, default="final_result",
      help="The name of the output classification layer in the retrained graph.")
    a("--flip_left_right", default=False, action="store_true",
      help="Whether to randomly flip half of the training images horizontally.")
    a("--random_crop", type=int, default=0,
      help="A percentage determining how much of a margin to randomly crop off the training images.")
    a("--random_scale", type=int, default=0,
      help="A percentage determining how much to randomly scale up the size of the training images by.")
    a("--random_brightness", type=int, default=0,
      help="A percentage determining how much to randomly multiply the training image input pixels up or down by.")
    a("--distorted_copies", type=int, default=3,
      help="With any distortion flag: how many distorted versions of each training image to compute "
           "(once, then cached) and train on.")
    a("--tfhub_module", type=str, default=None,
      help="Which image module to use: 'inception_v3' (built in, default: Google's 2015-12-05 Inception-v3, "
           "works offline), a TensorFlow Hub handle or URL of an image feature-vector module, or a local "
           "SavedModel directory.")
    a("--architecture", type=str, default=None,
      help="Older name for the module choice: 'inception_v3' or 'mobilenet_<1.0|0.75|0.50|0.25>_<size>'.")
    a("--model_dir", type=str, default=str(default_model_dir()),
      help="Where the built-in model's weights are downloaded and converted (once).")
    a("--saved_model_dir", type=str, default="", help="Where to save the exported graph as a SavedModel.")
    a("--logging_verbosity", type=str, default="INFO", choices=LOGGING_LEVELS,
      help="How much logging output should be produced.")
    a("--checkpoint_path", type=str, default="/tmp/_retrain_checkpoint",
      help="Where to save the trained new layer's checkpoint.")
    a("--random_seed", type=int, default=None,
      help="Seed for the weights and batch sampling, so that a run can be reproduced exactly "
           "(distorted copies are a fixed function of each image already).")
    a("--extraction_batch_size", type=int, default=32,
      help="How many images go through the network at once when computing bottlenecks.")
    a("--strict", default=False, action="store_true",
      help="Treat any unreadable image as an error (exit 2) instead of skipping it.")
    a("--assert_accuracy_at_least", type=float, default=None, metavar="PCT",
      help="Fail (exit 1) and keep the previous outputs when the final test accuracy is below PCT percent.")
    a("--quiet", default=False, action="store_true", help="Print only warnings, errors and the final result.")
    a("--report_dir", type=str, default=None,
      help="Where to write training_curves.png, confusion_matrix.png and summary.json "
           "(default: <output_graph without .pb>_report next to the output graph).")
    a("--optimizer", choices=("sgd", "momentum", "adam"), default=None,
      help="Optimizer of the new layer (default sgd, the classic choice).")
    a("--label_smoothing", type=float, default=None, help="Label smoothing of the training targets (0 to 1).")
    a("--dropout", type=float, default=None, help="Dropout rate on the bottleneck during training (0 to 1).")
    a("--weight_decay", type=float, default=None, help="L2 penalty on the new layer's weights.")
    a("--early_stopping_patience", type=int, default=None,
      help="Stop after this many evaluations without a lower validation cross-entropy, keeping the best "
           "step's weights (0: off).")
    a("--preset", choices=sorted(PRESETS), default=None,
      help="A measured combination of the options above; flags given explicitly still win.")
    a("--tflite_output", type=str, default="",
      help="Also write the whole classifier as a TensorFlow Lite model to this file (float images [N, H, W, 3] "
           "in [0, 1] -> softmax scores; the labels are embedded). Empty: no TFLite model.")
    a("--tflite_quantize", choices=("none", "float16", "dynamic", "int8"), default="none",
      help="How the TFLite model is quantized: none (float32), float16 weights, dynamic-range int8 weights, or "
           "int8 weights and activations calibrated on up to 100 training images (int8 input and output).")
    a("--bottleneck_layer", choices=TOP_BLOCKS, default=None,
      help="Built-in Inception-v3 only: the block whose averaged output is the bottleneck. mixed_10 is the "
           "classic pool_3 (default); mixed_9, one block lower, transfers better to new classes (--preset best).")
    a("--fine_tune", default=False, action="store_true",
      help="After training the new layer, also train the top --fine_tune_layers blocks of the built-in "
           "Inception-v3 with it (their input is cached once per image); kept only if validation improves.")
    a("--fine_tune_layers", type=int, default=1,
      help="How many mixed blocks --fine_tune trains, counting down from --bottleneck_layer: 1 (that block "
           "alone), 2 or 3.")
    a("--fine_tune_steps", type=int, default=300, help="How many fine-tuning steps to run.")
    a("--fine_tune_learning_rate", type=float, default=1e-4, help="Adam's learning rate while fine-tuning.")
    a("--fine_tune_batch_size", type=int, default=32, help="How many images to fine-tune on at a time.")
    return p


def config_from_args(args: argparse.Namespace) -> RetrainConfig:
    """Turn parsed flags into the configuration; raises UserError for inconsistent values."""
    from .errors import UserError

    if not args.image_dir:
        raise UserError("--image_dir is required: point it at a folder with one sub-folder of images per class.")
    module = args.tfhub_module
    if args.architecture:
        if args.architecture not in ARCHITECTURES:
            raise UserError(
                f"Unknown --architecture '{args.architecture}'; use inception_v3 or mobilenet_<version>_<size>, "
                "or name a module with --tfhub_module."
            )
        if module and module != ARCHITECTURES[args.architecture]:
            raise UserError("--architecture and --tfhub_module name different modules; give only one.")
        module = ARCHITECTURES[args.architecture]
    for name in ("how_many_training_steps", "eval_step_interval", "train_batch_size", "extraction_batch_size"):
        if getattr(args, name) <= 0:
            raise UserError(f"--{name} must be a positive number, got {getattr(args, name)}.")
    for name in ("testing_percentage", "validation_percentage"):
        if not 0 <= getattr(args, name) < 100:
            raise UserError(f"--{name} must be between 0 and 100, got {getattr(args, name)}.")
    if args.testing_percentage + args.validation_percentage >= 100:
        raise UserError("--testing_percentage plus --validation_percentage leaves no images for training.")
    if args.distorted_copies <= 0:
        raise UserError("--distorted_copies must be at least 1.")
    for name in ("random_crop", "random_scale", "random_brightness"):
        if getattr(args, name) < 0:
            raise UserError(f"--{name} is a percentage and cannot be negative.")
    if args.assert_accuracy_at_least is not None and not 0 <= args.assert_accuracy_at_least <= 100:
        raise UserError("--assert_accuracy_at_least is a percentage between 0 and 100.")
    if args.random_brightness >= 100:
        raise UserError("--random_brightness must be below 100 (a factor of 1 - b% must stay positive).")
    preset = PRESETS[args.preset or "classic"]
    options = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in preset.items()}
    if not 0 <= options["label_smoothing"] < 1 or not 0 <= options["dropout"] < 1:
        raise UserError("--label_smoothing and --dropout must be at least 0 and below 1.")
    if options["learning_rate"] <= 0:
        raise UserError(f"--learning_rate must be positive, got {options['learning_rate']}.")
    if options["weight_decay"] < 0 or options["early_stopping_patience"] < 0:
        raise UserError("--weight_decay and --early_stopping_patience cannot be negative.")
    if (module or BUILTIN_MODULE) != BUILTIN_MODULE:
        if args.bottleneck_layer not in (None, CLASSIC_TOP_BLOCK):
            raise UserError("--bottleneck_layer chooses a block of the built-in --tfhub_module inception_v3 only.")
        options["bottleneck_layer"] = CLASSIC_TOP_BLOCK  # a preset's choice has no meaning for another network
    if args.fine_tune:
        from .inception_v3 import MAX_TUNED_BLOCKS

        if (module or BUILTIN_MODULE) != BUILTIN_MODULE:
            raise UserError("--fine_tune works with the built-in --tfhub_module inception_v3 only.")
        if not 1 <= args.fine_tune_layers <= MAX_TUNED_BLOCKS:
            raise UserError(f"--fine_tune_layers must be between 1 and {MAX_TUNED_BLOCKS}, got {args.fine_tune_layers}.")
        for name in ("fine_tune_steps", "fine_tune_batch_size", "fine_tune_learning_rate"):
            if getattr(args, name) <= 0:
                raise UserError(f"--{name} must be positive, got {getattr(args, name)}.")
    if args.tflite_quantize != "none" and not args.tflite_output:
        raise UserError("--tflite_quantize needs --tflite_output, the file to write the TFLite model to.")
    values = {"tfhub_module": module or BUILTIN_MODULE, **options}
    for field in dataclasses.fields(RetrainConfig):
        if field.name in values:
            continue
        value = getattr(args, field.name)
        if "Path" in field.type:  # path flags; an empty optional path means "not asked for"
            value = Path(value) if value else None
        values[field.name] = value
    return RetrainConfig(**values)
