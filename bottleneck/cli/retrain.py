"""retrain.py's command line: its flags, the checked configuration they make, and its main.

The flags are built from ``config/settings.py``, group by group, so their
defaults and help texts are written once, there.  Flag names, meanings and
defaults follow the last classic TensorFlow-Hub ``retrain.py`` (and its
predecessor's ``--architecture``), so command lines that people already have
keep working.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..config.checks import check_settings
from ..config.settings import AUTO_PRESET, PRESETS, ModelSelection, RetrainConfig, settings_fields, with_flags
from ..errors import EXIT_OK, UserError
from ..model.modules import BUILTIN_MODULE
from ..model.tf_import import quiet_tensorflow
from .guard import run_guarded, setup_logging

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
                "--preset", choices=sorted([*PRESETS, AUTO_PRESET]),
                help="A measured combination of the training options and --bottleneck_layer; flags given "
                "explicitly still win. auto: the combination that cross-validates best on these images, from a "
                "small grid, searched over every option not given explicitly (docs/accuracy.md).")
    return p


def config_from_args(args: argparse.Namespace) -> RetrainConfig:
    """Turn parsed flags into the checked configuration; raises UserError for inconsistent values."""
    given = dict(vars(args))
    preset_name = given.pop("preset", "classic")
    preset = dict(PRESETS.get(preset_name, {}))  # auto starts from the classic defaults
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
    if preset_name == AUTO_PRESET:
        config = dataclasses.replace(config, selection=auto_selection(config, given))
    check_settings(config)  # every check before any work
    return config


def auto_selection(config: RetrainConfig, given: dict) -> ModelSelection:
    """--preset auto: the search, with the flags given explicitly fixed at their value."""
    from ..training.model_selection import SEARCHED_FLAGS

    if config.input.multi_label:
        raise UserError("--preset auto chooses the setting of a softmax layer and does not apply to --multi_label; "
                        "use --preset best or give the training flags.")
    return ModelSelection(fixed=frozenset(flag for flag in given if flag in SEARCHED_FLAGS))


def retrain_main(argv) -> int:
    args = build_parser().parse_args(argv)
    verbosity = getattr(args, "logging_verbosity", "INFO")
    if getattr(args, "quiet", False) and verbosity in ("DEBUG", "INFO"):
        verbosity = "WARN"
    setup_logging(verbosity)
    quiet_tensorflow(verbosity)

    def body():
        config = config_from_args(args)
        if config.export.tfjs_output:  # the converter lives in its own environment: find it before any work
            from ..export.tfjs import check_tfjs_dir, converter_path

            check_tfjs_dir(config.export.tfjs_output)
            converter_path()
        from ..pipeline import retrain
        from ..report.console import human_summary

        summary = retrain(config).summary
        # The short human summary is the command's result: stdout, even with --quiet.
        for line in human_summary(summary):
            print(line)
        return EXIT_OK

    return run_guarded("retrain.py", body)

