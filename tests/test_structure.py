"""The package's shape: no import circles, and the engine never reaches up to the command line."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bottleneck"
# The command line: argument parsing, the two commands' mains and the package's own commands.
COMMAND_LINE = {"cli", "__main__"}
# label_image.py's flags live beside its engine: classify.py is its command line and its engine in one.
PARSES_ARGUMENTS = COMMAND_LINE | {"classify"}


def imports_of(module: Path) -> set[str]:
    """The package modules that ``module`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bottleneck."):
            found.add(node.module.split(".")[1])
    return found


def graph() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in PACKAGE.glob("*.py")}


def test_no_module_of_the_package_is_part_of_an_import_circle():
    edges = graph()
    for start in edges:
        seen, stack = set(), list(edges[start])
        while stack:
            name = stack.pop()
            assert name != start, f"{start} imports itself through {sorted(seen)}"
            if name not in seen:
                seen.add(name)
                stack.extend(edges.get(name, ()))


def test_the_engine_never_imports_the_command_line():
    for name, imported in graph().items():
        if name not in COMMAND_LINE:
            assert not imported & COMMAND_LINE, f"{name} imports {imported & COMMAND_LINE}"


def test_only_the_command_line_parses_arguments():
    for module in PACKAGE.glob("*.py"):
        if module.stem not in PARSES_ARGUMENTS:
            tree = ast.parse(module.read_text())
            imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
            assert "argparse" not in imported, f"{module.name} imports argparse"


def test_every_setting_has_one_default_and_a_flag_in_a_help_group():
    from bottleneck.cli.retrain import build_parser
    from bottleneck.config.settings import RetrainConfig, settings_fields

    parser = build_parser()
    groups = {action.dest: group.title for group in parser._action_groups for action in group._group_actions}
    flags = [flag for _group, _field, flag in settings_fields()]
    assert len(flags) == len(set(flags))
    for group, _field, flag in settings_fields():
        assert groups[flag] == type(getattr(RetrainConfig(), group)).__doc__
    assert set(groups[f] for f in flags) == {"input and split", "bottlenecks", "training", "fine-tuning", "export",
                                              "reports", "run control"}
    # No flag carries a default of its own: the settings' dataclasses are the only source.
    assert all(action.default == "==SUPPRESS==" for action in parser._actions if action.dest != "help")


def test_the_flags_page_is_the_help_text():
    from tools.flags_doc import main

    assert main(["--check"]) == 0, "docs/flags.md is out of date: run python -m tools.flags_doc"


def test_the_readme_names_every_module_of_the_package():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in PACKAGE.glob("*.py") if f"`{p.name}`" not in readme]
    assert not missing, f"README's module table lacks {missing}"
