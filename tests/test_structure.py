"""The package's shape: sub-packages in layers, each importing only from the layers below it.

docs/architecture.md draws the same layers; a change here is a change of the architecture.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bottleneck"

# Bottom to top. A part may import from any part of a lower layer, and never from its own layer or above,
# so the engine never reaches up to the command line and no two parts can form an import circle.
LAYERS = [
    {"errors", "atomic", "console"},  # a user's error as one sentence; files replaced whole; the terminal
    {"data"},  # the user's images: walk, split, decode, distort, digest, storage
    {"model"},  # the network: modules, Inception-v3 and its weights, precision, running it
    {"config"},  # every setting, its default and every check of it
    {"cache"},  # the bottleneck store, shards and the sets read from it
    {"extraction"},  # the bottleneck phase
    {"training"},  # the new layer, fine-tuning, calibration, evaluation
    {"export", "data_checks"},  # the classifier as files; label errors and duplicates
    {"label_image", "report"},  # classifying with an export; the report folder
    {"scale_out"},  # the Beam pipelines
    {"review"},  # act on a run's findings: journaled moves, the review page, decisions from a CSV file
    {"pipeline"},  # the spine of one run
    {"cli"},  # the commands: flags, logging, signals, exit codes
    {"__main__"},  # python -m bottleneck
]
TOP_LEVEL_MODULES = {"__init__", "__main__", "pipeline", "errors", "atomic"}


def part_of(path: Path) -> str:
    """The layer part a file belongs to: its sub-package, or its own name at the top."""
    relative = path.relative_to(PACKAGE).parts
    return relative[0] if len(relative) > 1 else path.stem


def imported_parts(path: Path) -> set[str]:
    """The parts of the package that ``path`` imports, at the top or inside functions."""
    package = path.relative_to(PACKAGE).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = list(package[: len(package) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            names = target[:1] if target else [alias.name for alias in node.names]
        elif (node.module or "").startswith("bottleneck."):
            names = node.module.split(".")[1:2]
        else:
            continue
        found.update(names)
    return found


def layer_of(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def package_files():
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_sub_packages_and_a_handful_of_top_level_modules():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL_MODULES
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert parts == set().union(*LAYERS) - top - {"__main__"} - {"pipeline"}
    for part in parts:
        assert (PACKAGE / part / "__init__.py").is_file(), f"{part}/ is not a package"
        assert not list((PACKAGE / part).glob("*/*.py")), f"{part}/ nests a package: keep one level"


def test_every_part_imports_only_from_the_layers_below_it():
    for path in package_files():
        part = part_of(path)
        if part == "__init__":
            continue
        for imported in imported_parts(path) - {part}:
            assert layer_of(imported) < layer_of(part), \
                f"{path.relative_to(PACKAGE)} ({part}) imports {imported}, which is not in a lower layer"


def test_only_the_command_line_parses_arguments():
    for path in package_files():
        if part_of(path) in {"cli", "__main__"}:
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert "argparse" not in imported, f"{path.relative_to(PACKAGE)} imports argparse"


def test_the_layer_check_catches_an_import_from_above(tmp_path):
    """The check itself: an import that runs uphill is seen, relative or absolute."""
    (tmp_path / "data").mkdir()
    uphill = tmp_path / "data" / "walk.py"
    uphill.write_text("from ..training.layer import x\nfrom bottleneck.cli.retrain import y\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path
    try:
        assert imported_parts(uphill) == {"training", "cli"}
        assert part_of(uphill) == "data"
    finally:
        PACKAGE = saved
    assert layer_of("training") > layer_of("data") and layer_of("cli") > layer_of("data")


def test_every_setting_has_one_default_and_a_flag_in_a_help_group():
    from bottleneck.cli.retrain import build_parser
    from bottleneck.config.settings import RetrainConfig, settings_fields

    parser = build_parser()
    groups = {action.dest: group.title for group in parser._action_groups for action in group._group_actions}
    flags = [flag for _group, _field, flag in settings_fields()]
    assert len(flags) == len(set(flags))
    for group, _field, flag in settings_fields():
        assert groups[flag] == type(getattr(RetrainConfig(), group)).__doc__
    assert set(groups[f] for f in flags) == {"input and split", "bottlenecks", "training", "fine-tuning",
                                              "fine-tuning the whole network", "export",
                                              "reports", "run control"}
    # No flag carries a default of its own: the settings' dataclasses are the only source.
    assert all(action.default == "==SUPPRESS==" for action in parser._actions if action.dest != "help")


def test_the_flags_page_is_the_help_text():
    from tools.flags_doc import main

    assert main(["--check"]) == 0, "docs/flags.md is out of date: run python -m tools.flags_doc"


def test_the_architecture_page_names_every_part_of_the_package():
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    missing = sorted(part for part in parts if f"`{part}/`" not in page)
    assert not missing, f"docs/architecture.md lacks {missing}"
    modules = [p.relative_to(PACKAGE).as_posix() for p in package_files() if p.name != "__init__.py"]
    missing = [m for m in modules if f"`{m.split('/')[-1]}`" not in page]
    assert not missing, f"docs/architecture.md lacks {missing}"
